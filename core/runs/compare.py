"""Runs side by side: the settings that differ, best dev perplexity, time, speed, and their curves.

    runs = [load_run(p) for p in expand_runs(paths)]      # run folders (or a checkpoint, or an experiment)
    table = compare(runs, baseline=0)                      # differing settings only, deltas vs the baseline

A run's settings come from its checkpoint's metadata (`last`, else `best`, else its newest file): the
training settings with the learning rate resolved (None means the optimizer's default), the vocabulary size,
the corpus and, for a fine-tune, the run it started from. Its curves come from its metrics.jsonl
(core.runs.folder.RunFolder): training loss per batch and dev perplexity per evaluation, each point with
three x values, the step, the tokens seen and the minutes of training. `python -m core.runs compare` prints
the table (core/runs/__main__.py); the workbench's Compare screen draws the same records.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PoemError
from core.runs.checkpoint import read_meta
from core.runs.folder import BEST, LAST, METRICS, RunFolder, list_checkpoints

X_AXES = ("step", "tokens", "minutes")  # the x values of every curve point, in this order
NUMBERS = ("best_dev_ppl", "elapsed_s", "tokens_per_s")  # the columns compared against the baseline


@dataclass
class RunRecord:
    """One run as a comparison sees it."""

    path: Path
    name: str
    checkpoint: Path | None = None
    settings: dict = field(default_factory=dict)
    status: str = "unfinished"  # the trainer's `done` status, or "unfinished" (running, or killed)
    best_dev_ppl: float | None = None
    last_dev_ppl: float | None = None
    elapsed_s: float | None = None
    tokens_seen: int | None = None
    steps: int = 0
    tokens_per_s: float | None = None
    losses: list[tuple[int, float, float, float]] = field(default_factory=list)  # (step, tokens, min, loss)
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)  # (step, tokens, min, ppl)
    error: str | None = None  # why its settings could not be read

    def curve(self, which: str, x: str) -> list[tuple[float, float]]:
        """(x, y) points of "loss" or "dev_ppl" against "step", "tokens" or "minutes"."""
        points = self.losses if which == "loss" else self.evals
        k = X_AXES.index(x)
        return [(p[k], p[3]) for p in points]


def is_run_folder(path: Path) -> bool:
    return (path / METRICS).is_file() or bool(list_checkpoints(path))


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders: a run folder is itself, a checkpoint file stands for its folder, and a folder that holds
    run folders (an experiment's, `checkpoints/experiments/optimizers-tang300`) for each of them."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found = [path.parent]
        elif not path.is_dir():
            raise PoemError(f"{path}: no such run folder or checkpoint")
        elif is_run_folder(path):
            found = [path]
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and is_run_folder(p))
            if not found:
                raise PoemError(
                    f"{path}: not a run folder (no metrics.jsonl or checkpoint), nor a folder of runs"
                )
        out += [p for p in found if p.resolve() not in {q.resolve() for q in out}]
    return out


def short_names(paths: list[Path]) -> list[str]:
    """Each run's folder name, with as many parent folders as it takes to tell the runs apart."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while depth < max((len(p) for p in parts), default=1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
        depth += 1
    return ["/".join(p) for p in parts]


def _meta_of(path: Path) -> tuple[Path | None, dict | None, str | None]:
    """(checkpoint, its metadata, error) for a run folder: last, else best, else the newest file."""
    folder = RunFolder(path)
    candidates = [folder.pointer(LAST), folder.pointer(BEST), *reversed(list_checkpoints(path))]
    error = None
    for ckpt in candidates:
        if not ckpt.exists():
            continue
        try:
            return ckpt, read_meta(ckpt), None
        except PoemError as exc:
            error = str(exc)
    return None, None, error or "no checkpoint"


def settings_of(meta: dict) -> dict:
    """What defines a run: its training settings (lr resolved), vocabulary size, fine-tune origin."""
    from core.training.settings import DEFAULT_LR

    train = dict(meta.get("train") or {})
    if train.get("lr") is None and train.get("optimizer") in DEFAULT_LR:
        train["lr"] = DEFAULT_LR[train["optimizer"]]
    if isinstance(train.get("corpus"), str) and "/" in train["corpus"]:
        train["corpus"] = Path(train["corpus"]).name
    model = meta.get("model") or {}
    train["vocab_size"] = model.get("vocab_size")
    origin = meta.get("init_from")
    train["init_from"] = Path(origin["path"]).parent.name if isinstance(origin, dict) else None
    return train


def _number(value) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def load_run(path: Path, name: str | None = None) -> RunRecord:
    """A run folder's record: settings from its checkpoint, numbers and curves from its metrics.jsonl."""
    path = Path(path)
    run = RunRecord(path=path, name=name or path.name)
    run.checkpoint, meta, run.error = _meta_of(path)
    progress = (meta or {}).get("progress") or {}
    if meta is not None:
        run.settings = settings_of(meta)
    events = RunFolder(path).events()
    batches = [e for e in events if e.get("event") == "batch" and isinstance(e.get("step"), int)]
    steps = max((e["step"] for e in batches), default=progress.get("step") or 0)
    tokens_total = next((e.get("tokens_seen") for e in reversed(batches) if "tokens_seen" in e), None)
    tokens_total = tokens_total if tokens_total is not None else progress.get("tokens_seen")
    per_step = (tokens_total / steps) if tokens_total and steps else None

    def x_values(e: dict) -> tuple[int, float, float]:
        tokens = e.get("tokens_seen")
        if not isinstance(tokens, int | float):  # logs written before events carried it: estimated
            tokens = e["step"] * per_step if per_step else float("nan")
        return e["step"], float(tokens), float(e.get("elapsed_s") or 0.0) / 60

    run.losses = [(*x_values(e), float(e["loss"])) for e in batches if _number(e.get("loss")) is not None]
    evals = [
        e
        for e in events
        if e.get("event") == "eval" and isinstance(e.get("step"), int) and _number(e.get("dev_ppl"))
    ]
    run.evals = [(*x_values(e), float(e["dev_ppl"])) for e in evals]
    scored = [
        float(e["dev_ppl"]) for e in evals if not e.get("initial")
    ]  # a fine-tune's start is not its own
    run.best_dev_ppl = min(scored) if scored else _number(progress.get("best_dev_ppl"))
    run.last_dev_ppl = scored[-1] if scored else _number(progress.get("dev_ppl"))
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    run.status = str(done.get("status")) if done else "unfinished"
    times = [t for e in events if (t := _number(e.get("elapsed_s"))) is not None]
    run.elapsed_s = max(times) if times else _number(progress.get("elapsed_s"))
    run.steps = steps
    run.tokens_seen = tokens_total
    speeds = [s for e in batches if (s := _number(e.get("tokens_per_s"))) and s > 0]
    if speeds:
        run.tokens_per_s = statistics.median(speeds)
    elif tokens_total and run.elapsed_s:
        run.tokens_per_s = tokens_total / run.elapsed_s
    return run


def load_runs(paths: list[Path]) -> list[RunRecord]:
    folders = expand_runs(paths)
    return [load_run(p, n) for p, n in zip(folders, short_names(folders), strict=True)]


def differing(runs: list[RunRecord]) -> tuple[list[str], dict]:
    """(the settings whose values differ between the runs, in declaration order; those they share)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.settings if k not in keys]
    readable = [r for r in runs if r.settings]
    diff, same = [], {}
    for key in keys:
        values = [r.settings.get(key) for r in readable]
        if len({repr(v) for v in values}) > 1:
            diff.append(key)
        elif values:
            same[key] = values[0]
    return diff, same


def pick(runs: list[RunRecord], which: str | int | None) -> int:
    """The index of a run named by its index, its name, or its folder path (None: the first)."""
    if which is None:
        return 0
    if isinstance(which, int) or str(which).isdigit():
        index = int(which)
        if not 0 <= index < len(runs):
            raise PoemError(f"--baseline {which}: there are {len(runs)} runs (0 to {len(runs) - 1})")
        return index
    for i, run in enumerate(runs):
        if (
            str(which) in (run.name, str(run.path), run.path.name)
            or Path(which).resolve() == run.path.resolve()
        ):
            return i
    raise PoemError(f"--baseline {which}: not one of the runs ({', '.join(r.name for r in runs)})")


def compare(runs: list[RunRecord], baseline: int = 0, *, curves: bool = False) -> dict:
    """The comparison as one JSON-ready object: runs (differing settings, numbers, deltas against the
    baseline), the baseline's name, the differing and shared settings, and with `curves` every run's
    points [step, tokens, minutes, value]."""
    diff, same = differing(runs)
    base = runs[baseline] if runs else None
    rows = []
    for run in runs:
        row = {
            "name": run.name,
            "path": str(run.path),
            "checkpoint": str(run.checkpoint) if run.checkpoint else None,
            "status": run.status,
            "settings": {k: run.settings.get(k) for k in diff},
            "best_dev_ppl": run.best_dev_ppl,
            "last_dev_ppl": run.last_dev_ppl,
            "elapsed_s": run.elapsed_s,
            "steps": run.steps,
            "tokens_seen": run.tokens_seen,
            "tokens_per_s": run.tokens_per_s,
            "delta": {},
            "ratio": {},
            "error": run.error,
        }
        for key in NUMBERS:
            mine, theirs = getattr(run, key), getattr(base, key) if base else None
            ok = mine is not None and theirs is not None
            row["delta"][key] = mine - theirs if ok else None
            row["ratio"][key] = mine / theirs if ok and theirs else None
        if curves:
            row["curves"] = {"loss": [list(p) for p in run.losses], "dev_ppl": [list(p) for p in run.evals]}
        rows.append(row)
    return {
        "runs": rows,
        "baseline": base.name if base else None,
        "differing": diff,
        "same": same,
        "x_axes": list(X_AXES),
    }
