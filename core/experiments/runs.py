"""Experiment runs as ordinary training runs: plan them, tell done from resumable, launch, and summarise.

Every run of an experiment is `python -m core.train` in its own folder
`<checkpoints>/experiments/<experiment>-<corpus>/<name>/`, so it has the same metrics.jsonl, checkpoints and
best/last pointers as any run, and the workbench can open it. A child process per run keeps the runs
isolated (no state leaks from one optimizer to the next) and lets a killed experiment be resumed run by run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
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

_CHILDREN: set[subprocess.Popen] = set()  # the core.train processes running now (to stop them together)


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


# --- launching ---------------------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    """One run an experiment still needs, for whoever launches it (core.experiments, or the workbench).

    `argv` is the `python -m core.train` command; call `prepare()` just before starting it and
    `finished(returncode, message)` when it has exited, so that the bookkeeping is the same whoever
    launches: a fresh start clears what a killed run left, the run's settings are recorded (a later plan
    with other settings is refused), and a run that failed for good (exit 2) is skipped afterwards."""

    spec: RunSpec
    state: str  # "start" or "resume"

    @property
    def argv(self) -> list[str]:
        argv = argv_for(self.spec, self.state)
        assert argv is not None
        return argv

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir

    def prepare(self) -> None:
        if self.state == "start":
            clear_run(self.spec)
        write_record(self.spec, failed=None)

    def finished(self, returncode: int, message: str = "") -> None:
        if returncode == 2:  # a user-level failure (e.g. diverged): rerunning would do the same
            tail = _last_line(self.spec.run_dir / "stderr.txt")
            write_record(self.spec, failed=message or tail or "core.train exited with status 2")


def launch(spec: RunSpec, state: str, on_event: Callable[[dict], None] | None = None) -> dict:
    """Run one child `core.train` to the end; returns {"returncode", "message"}.

    Ctrl-C reaches the child too (same process group): it saves a checkpoint and exits 130; we then stop
    the whole experiment, and the next invocation resumes this run.
    """
    planned = PlannedRun(spec, state)
    planned.prepare()
    argv = planned.argv
    with open(spec.run_dir / "stderr.txt", "a", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [*argv, "--events", "jsonl"], stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8"
        )
        _CHILDREN.add(proc)
        message = ""
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "error":
                    message = event.get("message", "")
                if on_event is not None:
                    on_event(event)
            proc.wait()
        finally:
            if proc.poll() is None:  # we were interrupted: let the child save, then wait for it
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _CHILDREN.discard(proc)
    if proc.returncode in (130, 143, -signal.SIGINT, -signal.SIGTERM):
        raise KeyboardInterrupt
    planned.finished(proc.returncode, message)
    if proc.returncode not in (0, 2):
        tail = _last_line(spec.run_dir / "stderr.txt")
        message = message or tail or f"core.train exited with status {proc.returncode}"
    return {"returncode": proc.returncode, "message": message}


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_all(
    specs: list[RunSpec],
    *,
    fresh: bool = False,
    jobs: int = 1,
    on_event: Callable[[RunSpec, dict], None] | None = None,
    on_state: Callable[[RunSpec, str], None] | None = None,
) -> list[dict]:
    """Bring every run to its budget, `jobs` at a time; then summarise each from its metrics.jsonl."""
    launched: dict[str, dict] = {}
    with exclusive({spec.run_dir.parent for spec in specs}):
        if fresh:
            for spec in specs:
                clear_run(spec)
        todo = []
        for spec in specs:
            state = run_state(spec)
            if on_state is not None:
                on_state(spec, state)
            if state in ("start", "resume"):
                callback = (lambda e, s=spec: on_event(s, e)) if on_event is not None else None
                todo.append((spec, state, callback))
        if jobs <= 1:
            for spec, state, callback in todo:
                launched[spec.name] = launch(spec, state, callback)
        else:
            launched = launch_parallel(todo, jobs)
    return [summarize(spec, launched.get(spec.name)) for spec in specs]


def launch_parallel(todo: list, jobs: int) -> dict[str, dict]:
    """Several children at once (one thread each reads its events); an interrupt stops them all."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    launched = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(launch, *item): item[0] for item in todo}
        try:
            for future in as_completed(futures):
                launched[futures[future].name] = future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            for proc in list(_CHILDREN):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # each saves a checkpoint; its thread then ends
            raise
    return launched


def experiment_lock(checkpoints: Path, experiment: str, corpus: str):
    """The lock `python -m core.experiments` holds while it trains an experiment (a context manager)."""
    return exclusive({experiment_dir(checkpoints, experiment, corpus)})


@contextlib.contextmanager
def exclusive(folders):
    """Hold a lock on each experiment folder: two processes training the same runs would corrupt them."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(folders):
            folder.mkdir(parents=True, exist_ok=True)
            fh = stack.enter_context(open(folder / ".lock", "w"))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise PoemError(f"{folder} is in use by another experiment process; wait for it") from None
        yield


# --- summaries -------------------------------------------------------------------------------------------


def curve(events: list[dict]) -> list[dict]:
    """Dev perplexity per evaluated step; a step evaluated again after a resume keeps its latest value."""
    points: dict[int, dict] = {}
    for e in events:
        if e["event"] == "eval" and e.get("dev_ppl") is not None:
            points[e["step"]] = {
                "step": e["step"],
                "elapsed_s": round(e.get("elapsed_s", 0.0), 3),
                "dev_ppl": e["dev_ppl"],
                "dev_loss": e.get("dev_loss"),
                "train_loss": e.get("loss"),
                "lr": e.get("lr"),
            }
    return [points[s] for s in sorted(points)]


def summarize(spec: RunSpec, launched: dict | None = None) -> dict:
    """The numbers of one run for the table: best dev ppl and where, steps, time, speed, and its curve."""
    events = read_events(spec.run_dir)
    record = read_record(spec.run_dir)
    points = curve(events)
    done = next((e for e in reversed(events) if e["event"] == "done"), None)
    finished = bool(events) and events[-1]["event"] == "done" and events[-1].get("status") in FINISHED
    speeds = [e["tokens_per_s"] for e in events if e["event"] == "batch" and e.get("tokens_per_s")]
    progress = [e for e in events if e["event"] in ("batch", "done") and "elapsed_s" in e]
    latest = max(progress, key=lambda e: (e["step"], e["elapsed_s"])) if progress else None
    best = min(points, key=lambda p: p["dev_ppl"]) if points else None
    status = done.get("status") if finished and done else None
    if record.get("failed"):
        status = "failed"
    elif status is None:
        status = "incomplete"
    message = record.get("failed") or (launched or {}).get("message") or ""
    return {
        "name": spec.name,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "lr_source": spec.lr_source,
        "run_dir": str(spec.run_dir),
        "status": status,
        "message": message,
        "steps": latest["step"] if latest else 0,
        "elapsed_s": latest["elapsed_s"] if latest else 0.0,
        "tokens_seen": done.get("tokens_seen") if finished and done else None,
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "best_dev_ppl": best["dev_ppl"] if best else None,
        "best_step": best["step"] if best else None,
        "best_elapsed_s": best["elapsed_s"] if best else None,
        "final_dev_ppl": points[-1]["dev_ppl"] if points else None,
        "evaluations": len(points),
        "curve": points,
    }


def choose_lr(rows: list[dict]) -> dict | None:
    """The sweep's winner: the lowest best dev perplexity (ties: the smaller lr)."""
    good = [r for r in rows if r["best_dev_ppl"] is not None and math.isfinite(r["best_dev_ppl"])]
    if not good:
        return None
    return min(good, key=lambda r: (r["best_dev_ppl"], r["lr"]))
