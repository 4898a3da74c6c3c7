"""The optimizer comparison and its learning-rate sweep: which runs, with which learning rates, what came out.

Every optimizer trains the same model from the same seed (so the same initial weights and batch order) for
the same budget; only the optimizer and its learning rate differ. The learning rate of each optimizer is the
winner of a small sweep (LR_GRID: three values per optimizer, short runs), given explicitly, or
core.training.trainer.DEFAULT_LR.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PoemError
from core.experiments.launch import PlannedRun, choose_lr, run_all
from core.experiments.runs import (
    LR_GRID,
    Budget,
    RunSpec,
    default_eval_every,
    default_preset,
    experiment_dir,
    make_spec,
    run_state,
)
from core.training.settings import DEFAULT_LR, OPTIMIZERS, PRESETS, TrainConfig

NEVER = 1_000_000  # --lr-patience that never runs out: the learning rate stays constant


@dataclass
class Plan:
    """What every run of one experiment shares."""

    corpus: str = "tang300"
    budget: Budget = field(default_factory=lambda: Budget(steps=300))
    preset: str | None = None  # None: the corpus's own preset (tang300, quantangshi), else "quick"
    seed: int = 2019
    eval_every: int | None = None  # None: epoch ends, or about 20 evaluations if epochs are few
    patience: int = 0  # 0: no early stopping, every optimizer gets the whole budget
    extra: dict = field(default_factory=dict)  # more core.train flags (TrainConfig field -> value)
    checkpoints: Path = Path("checkpoints")
    python: str = sys.executable
    _epoch_steps: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.preset = self.preset or default_preset(self.corpus)
        if self.preset not in PRESETS:
            raise PoemError(f"--preset {self.preset}: choose one of {', '.join(sorted(PRESETS))}")
        # A constant learning rate unless asked otherwise: the trainer's ReduceLROnPlateau (halve on any
        # evaluation without improvement) reacts to noise differently per optimizer and, evaluated every few
        # steps, can shrink an lr a thousandfold within one short run, which would compare schedules.
        # (--lr-factor 1 would say it best, but torch's scheduler refuses a factor of 1)
        self.extra = {"lr_patience": NEVER, **self.extra}

    def resolved_eval_every(self) -> int | None:
        if self.eval_every is not None:
            return self.eval_every
        return default_eval_every(self.budget, self.epoch_steps()) if self.budget.steps else None

    def epoch_steps(self) -> int:
        """Optimizer steps per epoch, counted as the trainer makes its batches."""
        if self._epoch_steps is None:
            from core.corpus import batches_for_mode, load_corpus

            cfg = self.train_config()
            corpus = load_corpus(cfg.corpus, script=cfg.script, forms=cfg.forms, train_forms=cfg.train_forms)
            vocab = corpus.build_vocab(min_freq=cfg.min_freq)
            train = [vocab.encode(p) for p in corpus.splits["train"]]
            batches = batches_for_mode(
                train,
                cfg.seq_mode,
                cfg.batch_size,
                cfg.seq_len,
                seed=self.seed,
                epoch=0,
                crops=cfg.crops_per_batch,
            )
            self._epoch_steps = len(batches)
        return self._epoch_steps

    def spec(self, name: str, optimizer: str, lr: float, run_dir: Path, lr_source: str) -> RunSpec:
        eval_every = self.resolved_eval_every()
        return make_spec(
            name=name,
            optimizer=optimizer,
            lr=lr,
            run_dir=run_dir,
            corpus=self.corpus,
            preset=self.preset,
            seed=self.seed,
            budget=self.budget,
            eval_every=eval_every,
            patience=self.patience,
            extra=self.extra,
            python=self.python,
            lr_source=lr_source,
        )

    def train_config(self) -> TrainConfig:
        """The settings every run shares (for the report: |V| aside, the assignment's bs, hs, is, ...)."""
        return TrainConfig.from_dict({**PRESETS[self.preset], "corpus": self.corpus, **self.extra})

    def vocab_size(self) -> int:
        """|V| of every run (the vocabulary is built from the train split, as the trainer does)."""
        from core.corpus import load_corpus

        cfg = self.train_config()
        corpus = load_corpus(cfg.corpus, script=cfg.script, forms=cfg.forms, train_forms=cfg.train_forms)
        return len(corpus.build_vocab(min_freq=cfg.min_freq))

    def describe(self) -> dict:
        cfg = self.train_config().to_dict()
        keep = ("batch_size", "embed_size", "hidden_size", "num_layers", "dropout", "clip", "seq_mode")
        settings = {k: cfg[k] for k in keep}
        settings.update(
            lr_factor=cfg["lr_factor"],
            lr_patience=cfg["lr_patience"],
            weight_decay=cfg["weight_decay"],
            momentum=cfg["momentum"],
            patience=self.patience,
            eval_every=self.resolved_eval_every(),
            extra=self.extra,
        )
        return settings


def check_optimizers(names) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise PoemError(
            f"--optimizers: choose from {', '.join(OPTIMIZERS)} (got {', '.join(unknown) or 'none'})"
        )
    return names


# --- the comparison --------------------------------------------------------------------------------------


def optimizer_specs(
    plan: Plan,
    optimizers=OPTIMIZERS,
    lrs: dict[str, float] | None = None,
    sources: dict[str, str] | None = None,
) -> list[RunSpec]:
    """One run per optimizer in <checkpoints>/experiments/optimizers-<corpus>/<optimizer>/.

    The lr of an optimizer is lrs[opt] (its source: sources[opt], else "given"), else DEFAULT_LR[opt]."""
    root = experiment_dir(plan.checkpoints, "optimizers", plan.corpus)
    lrs, sources = lrs or {}, sources or {}
    specs = []
    for opt in check_optimizers(optimizers):
        lr, source = (lrs[opt], sources.get(opt, "given")) if opt in lrs else (DEFAULT_LR[opt], "default")
        specs.append(plan.spec(opt, opt, lr, root / opt, source))
    return specs


def plan_optimizer_runs(
    corpus: str = "tang300",
    *,
    budget_steps: int | None = None,
    budget_minutes: float | None = None,
    optimizers=OPTIMIZERS,
    lrs: dict[str, float] | None = None,
    checkpoints: Path = Path("checkpoints"),
    **plan_fields,
) -> list[PlannedRun]:
    """The runs still to do for the comparison, in order (for the workbench).

    Each has `.argv`, a complete `python -m core.train ...` command (append `--events jsonl` or `--quiet`);
    call its `.prepare()` before launching it and `.finished(returncode, message)` after. A run already
    done or failed is left out; a run with a last.safetensors but no `done` is resumed. Running them one
    after the other, in this order, holding `experiment_lock(...)`, is what
    `python -m core.experiments optimizers` does.
    """
    plan = Plan(
        corpus=corpus,
        budget=Budget(budget_steps, budget_minutes),
        checkpoints=Path(checkpoints),
        **plan_fields,
    )
    todo = []
    for spec in optimizer_specs(plan, optimizers, lrs):
        state = run_state(spec)
        if state in ("start", "resume"):
            todo.append(PlannedRun(spec, state))
    return todo


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


def machine() -> dict:
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name()
    return {
        "device": device,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
    }


def run_comparison(
    plan: Plan,
    optimizers,
    lrs: dict[str, float],
    sources: dict[str, str],
    *,
    fresh: bool,
    sweep: dict | None,
    **hooks,
) -> dict:
    """Bring every optimizer's run to the budget; the numbers of each (sweep: what chose the lrs)."""
    rows = run_all(optimizer_specs(plan, optimizers, lrs, sources), fresh=fresh, **hooks)
    return {
        "experiment": "optimizers",
        "corpus": plan.corpus,
        "preset": plan.preset,
        "seed": plan.seed,
        "budget": plan.budget.to_dict(),
        "settings": plan.describe(),
        "vocab_size": plan.vocab_size(),
        "runs_dir": str(experiment_dir(plan.checkpoints, "optimizers", plan.corpus)),
        "runs": rows,
        "sweep": sweep,
        "machine": machine(),
    }


# --- the learning-rate sweep -----------------------------------------------------------------------------


def sweep_specs(plan: Plan, grid: dict[str, tuple[float, ...]]) -> list[RunSpec]:
    """One short run per (optimizer, lr) in <checkpoints>/experiments/lr-sweep-<corpus>/<opt>-lr<lr>/."""
    root = experiment_dir(plan.checkpoints, "lr-sweep", plan.corpus)
    return [
        plan.spec(f"{opt}-lr{lr:g}", opt, lr, root / f"{opt}-lr{lr:g}", "grid")
        for opt, values in grid.items()
        for lr in values
    ]


def sweep_grid(optimizers, lrs: list[float] | None = None) -> dict[str, tuple[float, ...]]:
    grid = {}
    for opt in check_optimizers(optimizers):
        values = tuple(lrs) if lrs else LR_GRID[opt]
        if any(not (v > 0) for v in values):
            raise PoemError("--lrs: every learning rate must be > 0")
        grid[opt] = tuple(sorted(set(values)))
    return grid


def run_sweep(
    plan: Plan,
    grid: dict[str, tuple[float, ...]],
    *,
    fresh: bool,
    previous: dict | None = None,
    extend: int = 2,
    **hooks,
) -> dict:
    """Run the sweep and pick each optimizer's lr; entries of `previous` for other optimizers are kept.

    When the winner is at an end of the grid, the best lr may lie beyond it: the grid grows by the same
    factor in that direction, one value at a time, at most `extend` times."""
    tried = {opt: sorted(values) for opt, values in grid.items()}
    rows = run_all(sweep_specs(plan, grid), fresh=fresh, **hooks)
    for _ in range(extend):
        beyond = {}
        for opt, values in tried.items():
            best = choose_lr([r for r in rows if r["optimizer"] == opt])
            lr = next_lr(values, best["lr"]) if best else None
            if lr is not None:
                beyond[opt] = (lr,)
        if not beyond:
            break
        rows += run_all(sweep_specs(plan, beyond), fresh=fresh, **hooks)
        for opt, (lr,) in beyond.items():
            tried[opt] = sorted([*tried[opt], lr])
    entries = {}
    if previous and same_sweep(previous, plan):
        entries = {k: v for k, v in previous.get("optimizers", {}).items() if k not in grid}
    for opt, values in tried.items():
        mine = sorted((r for r in rows if r["optimizer"] == opt), key=lambda r: r["lr"])
        best = choose_lr(mine)
        entries[opt] = {
            "grid": list(grid[opt]),
            "tried": values,
            "runs": mine,
            "chosen_lr": best["lr"] if best else None,
            "chosen_best_dev_ppl": best["best_dev_ppl"] if best else None,
            # still at an end after extending: the best lr may lie outside what was tried
            "at_edge": next_lr(values, best["lr"]) is not None if best else False,
        }
    ordered = {opt: entries[opt] for opt in OPTIMIZERS if opt in entries}
    return {
        "experiment": "lr-sweep",
        "corpus": plan.corpus,
        "preset": plan.preset,
        "seed": plan.seed,
        "budget": plan.budget.to_dict(),
        "settings": plan.describe(),
        "runs_dir": str(experiment_dir(plan.checkpoints, "lr-sweep", plan.corpus)),
        "optimizers": ordered,
        "chosen": {opt: e["chosen_lr"] for opt, e in ordered.items() if e["chosen_lr"] is not None},
        "machine": machine(),
    }


def next_lr(values: list[float], best: float) -> float | None:
    """The next lr of the 1-3-10 ladder beyond an end of the grid when the best is at that end."""
    if len(values) < 2:
        return None
    ladder = [m * 10.0**k for k in range(-7, 4) for m in (1, 3)]
    if best == values[-1]:
        return float(f"{min(x for x in ladder if x > values[-1] * 1.5):.1g}")
    if best == values[0]:
        return float(f"{max(x for x in ladder if x < values[0] / 1.5):.1g}")
    return None


def same_sweep(previous: dict, plan: Plan) -> bool:
    """Whether an earlier sweep file measured the same thing (then its other optimizers stay in the table)."""
    return (
        previous.get("corpus") == plan.corpus
        and previous.get("preset") == plan.preset
        and previous.get("seed") == plan.seed
        and previous.get("budget") == plan.budget.to_dict()
        and previous.get("settings") == plan.describe()
    )
