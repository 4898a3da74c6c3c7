"""Experiment runs as ordinary training runs: plan them, tell done from resumable, launch, and summarise.

Every run of an experiment is `python -m core.train` in its own folder
`<checkpoints>/experiments/<experiment>-<corpus>/<name>/`, so it has the same metrics.jsonl, checkpoints and
best/last pointers as any run, and the workbench can open it. A child process per run keeps the runs
isolated (no state leaks from one optimizer to the next) and lets a killed experiment be resumed run by run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import PoemError
from core.runs.metrics import read_events
from core.training.settings import OPTIMIZERS, PRESETS, RESUME_OVERRIDABLE

# A run whose last event is `done` with one of these statuses has finished its budget.
FINISHED = ("finished", "max_steps", "time_limit", "early_stopped")

# Flags the experiment sets itself; a user's extra training flags may not set them.
CONTROLLED_FLAGS = ("run_dir", "resume", "checkpoints", "events", "quiet", "preset", "corpus", "optimizer")
CONTROLLED_FLAGS += ("lr", "max_steps", "max_minutes", "seed")

# The learning-rate grid of the sweep: three values a factor ~3 apart around each optimizer's customary
# setting (torch's defaults: SGD has none; Adagrad 0.01; Adadelta 1.0; RMSprop 0.01; Adam(W) 0.001).
LR_GRID: dict[str, tuple[float, ...]] = {
    "sgd": (0.3, 1.0, 3.0),
    "momentum": (0.03, 0.1, 0.3),
    "nesterov": (0.03, 0.1, 0.3),
    "adagrad": (0.01, 0.03, 0.1),
    "adadelta": (0.3, 1.0, 3.0),
    "rmsprop": (3e-4, 1e-3, 3e-3),
    "adam": (1e-3, 3e-3, 1e-2),
    "adamw": (1e-3, 3e-3, 1e-2),
}

EXPERIMENT_FILE = "experiment.json"  # in each run folder: the settings that define it, and any failure


@dataclass
class Budget:
    """How long each run trains: optimizer steps (deterministic) and/or wall-clock minutes."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise PoemError("give a budget: --budget-steps N and/or --budget-minutes M")
        if self.steps is not None and self.steps <= 0:
            raise PoemError("--budget-steps: must be > 0")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise PoemError("--budget-minutes: must be > 0")

    def reached(self, step: int, elapsed_s: float) -> bool:
        """Either budget used up: a run stops at whichever comes first."""
        by_steps = self.steps is not None and step >= self.steps
        by_time = self.minutes is not None and elapsed_s >= self.minutes * 60 - 0.5  # rounding of resumes
        return by_steps or by_time

    def to_dict(self) -> dict:
        return {"steps": self.steps, "minutes": self.minutes}


@dataclass
class RunSpec:
    """One training run of an experiment: its folder and the `core.train` flags that make it."""

    name: str  # "adam", or "adam-lr0.003" in a sweep
    optimizer: str
    lr: float
    run_dir: Path
    flags: dict[str, str]  # core.train flag name (underscores) -> value, in order
    budget: Budget
    python: str = sys.executable
    lr_source: str = ""  # "sweep", "given", "default" or "grid"

    def identity(self) -> dict[str, str]:
        """The flags that define the run; a folder made with other values is another run."""
        return {k: v for k, v in self.flags.items() if k not in RESUME_OVERRIDABLE and k != "run_dir"}

    def fresh_argv(self) -> list[str]:
        return [self.python, "-m", "core.train", *to_argv(self.flags)]

    def resume_argv(self) -> list[str]:
        """Continue from last.safetensors with the schedule flags; the time budget less what was used."""
        flags = {k: v for k, v in self.flags.items() if k in RESUME_OVERRIDABLE}
        if self.budget.minutes is not None:
            used = _checkpoint_elapsed(self.run_dir / "last.safetensors")
            flags["max_minutes"] = _number(max(self.budget.minutes - used / 60, 1e-3))
        last = str(self.run_dir / "last.safetensors")
        return [self.python, "-m", "core.train", "--resume", last, *to_argv(flags)]


def to_argv(flags: dict[str, str]) -> list[str]:
    out: list[str] = []
    for name, value in flags.items():
        out += ["--" + name.replace("_", "-"), value]
    return out


def _number(x: float) -> str:
    return format(x, "g")


def slug(corpus: str) -> str:
    """A folder-friendly corpus name: tang300, quantangshi, or a user file's stem."""
    return Path(corpus).stem if (os.sep in corpus or corpus.endswith(".txt")) else corpus


def experiment_dir(checkpoints: Path, experiment: str, corpus: str) -> Path:
    return Path(checkpoints) / "experiments" / f"{experiment}-{slug(corpus)}"


def default_preset(corpus: str) -> str:
    return corpus if corpus in PRESETS else "quick"


def parse_extra_flags(extra: list[str]) -> dict:
    """Validate training flags passed through (e.g. --hidden-size 128) with core.train's own parser.

    Returns TrainConfig field -> typed value."""
    if not extra:
        return {}
    from core.options import given
    from core.train import build_parser
    from core.training.settings import TrainConfig

    parser = build_parser()
    args = parser.parse_args(extra)
    parsed = given(args, TrainConfig)  # only the settings given: their flags have no default in namespace
    others = {k for k, v in vars(args).items() if k not in parsed and v != parser.get_default(k)}
    refused = sorted((set(parsed) | others) & set(CONTROLLED_FLAGS))
    if refused:
        names = ", ".join("--" + n.replace("_", "-") for n in refused)
        raise PoemError(f"{names}: set by the experiment itself (see python -m core.experiments --help)")
    if others - set(CONTROLLED_FLAGS):
        raise PoemError(f"{', '.join(sorted(others))}: not a training setting an experiment can pass on")
    return parsed


def _flag_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _number(v) if isinstance(v, float) else str(v)


def default_eval_every(budget: Budget, epoch_steps: int) -> int | None:
    """Enough evaluations for a curve, no more (each is a pass over dev, dearer than a training step).

    The trainer evaluates at the end of every epoch anyway: when that gives 10 or more points within the
    step budget, nothing is added (0); otherwise about 20 points, at most one per 5 steps."""
    if not budget.steps:
        return None
    if budget.steps // max(epoch_steps, 1) >= 10:
        return 0
    return max(min(5, budget.steps), budget.steps // 20)


def make_spec(
    *,
    name: str,
    optimizer: str,
    lr: float,
    run_dir: Path,
    corpus: str,
    preset: str,
    seed: int,
    budget: Budget,
    eval_every: int | None,
    patience: int,
    extra: dict,
    python: str,
    lr_source: str,
) -> RunSpec:
    """The flags of one run: preset model, this optimizer and lr, the shared seed, the budget."""
    if optimizer not in OPTIMIZERS:
        raise PoemError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    flags = {
        "preset": preset,
        "corpus": corpus,
        "optimizer": optimizer,
        "lr": _number(lr),
        "seed": str(seed),
        "run_dir": str(run_dir),
        # the budget decides when a run ends, not epochs or early stopping (unless --patience is given)
        "epochs": "100000",
        "patience": str(patience),
        "keep": "1",
        "save_every": "2",
        "sample_on_eval": "false",  # same work per evaluation for every optimizer
    }
    if eval_every is not None:
        flags["eval_every"] = str(eval_every)
    if budget.steps is not None:
        flags["max_steps"] = str(budget.steps)
    if budget.minutes is not None:
        flags["max_minutes"] = _number(budget.minutes)
    flags.update({k: _flag_value(v) for k, v in extra.items()})
    return RunSpec(name, optimizer, lr, Path(run_dir), flags, budget, python, lr_source)


# --- state of a run folder -------------------------------------------------------------------------------


def read_record(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_record(spec: RunSpec, **fields) -> None:
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": spec.name, "optimizer": spec.optimizer, "lr": spec.lr, "lr_source": spec.lr_source}
    record.update(identity=spec.identity(), budget=spec.budget.to_dict(), **fields)
    tmp = spec.run_dir / (EXPERIMENT_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, spec.run_dir / EXPERIMENT_FILE)


def run_state(spec: RunSpec) -> str:
    """ "done", "failed" (diverged or refused: rerunning would fail again), "resume" or "start"."""
    record = read_record(spec.run_dir)
    if record and record.get("identity") != spec.identity():
        changed = _describe_change(record.get("identity") or {}, spec.identity())
        raise PoemError(
            f"{spec.run_dir} was trained with other settings ({changed}); add --fresh to start it again"
        )
    events = read_events(spec.run_dir)
    last = events[-1] if events else None
    if last and last["event"] == "done":
        if last.get("status") in ("finished", "early_stopped"):
            return "done"
        if last.get("status") in FINISHED and spec.budget.reached(last["step"], last["elapsed_s"]):
            return "done"
    if record.get("failed"):
        return "failed"
    if (spec.run_dir / "last.safetensors").exists():
        return "resume"  # at its budget already (killed just before `done`), the child only writes `done`
    return "start"


def _describe_change(was: dict, now: dict) -> str:
    keys = sorted(set(was) | set(now))
    return ", ".join(
        f"--{k.replace('_', '-')} {was.get(k)} -> {now.get(k)}" for k in keys if was.get(k) != now.get(k)
    )


def _checkpoint_elapsed(path: Path) -> float:
    """Training seconds a checkpoint has used; 0 when unreadable (resuming will then say what is wrong)."""
    from core.runs.checkpoint import read_meta

    try:
        return float(read_meta(path)["progress"].get("elapsed_s", 0.0))
    except Exception:
        return 0.0


def argv_for(spec: RunSpec, state: str) -> list[str] | None:
    """The command that brings a run to its budget (None when there is nothing to do)."""
    if state == "start":
        return spec.fresh_argv()
    if state == "resume":
        return spec.resume_argv()
    return None


def clear_run(spec: RunSpec) -> None:
    """Delete a run folder (--fresh, or a start over a run killed before its first save)."""
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
