"""What the Compare screen shows, without the screen: marked runs (core.runs.compare records), one stable
colour each, the x axis of the curves, the log scale, the baseline, and the table's columns and cells."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from core.runs.compare import X_AXES, RunRecord, compare, load_runs

# (plotext colour, rich colour): the n-th run keeps the n-th pair whatever the axis or the baseline
COLOURS = (
    ("cyan", "cyan"),
    ("orange", "dark_orange"),
    ("green", "green"),
    ("magenta", "magenta"),
    ("red", "red"),
    ("blue", "dodger_blue1"),
    ("yellow", "yellow"),
    ("white", "white"),
)
X_LABELS = {"step": "step", "tokens": "tokens seen", "minutes": "minutes of training"}
SETTING_LABELS = {"lr": "lr", "optimizer": "optimizer", "corpus": "corpus", "init_from": "from"}


def colour(index: int) -> tuple[str, str]:
    return COLOURS[index % len(COLOURS)]


def short(value) -> str:
    """A setting's value in a table cell: paths by their last two parts, floats briefly."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if "/" in text:
        text = "/".join(Path(text).parts[-2:])
    return text if len(text) <= 24 else "…" + text[-23:]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass
class Comparison:
    """Marked runs side by side (the CLI twin is `python -m core.runs compare`)."""

    runs: list[RunRecord]
    baseline: int = 0
    x: str = "step"
    log_y: bool = True
    summary: dict = field(default_factory=dict)

    @classmethod
    def load(cls, paths: list[Path]) -> Comparison:
        view = cls(load_runs([Path(p) for p in paths]))
        view.refresh()
        return view

    def refresh(self) -> None:
        self.summary = compare(self.runs, self.baseline) if self.runs else {"runs": [], "differing": []}

    def pin(self, index: int) -> None:
        if 0 <= index < len(self.runs):
            self.baseline = index
            self.refresh()

    def next_x(self) -> str:
        self.x = X_AXES[(X_AXES.index(self.x) + 1) % len(X_AXES)]
        return self.x

    def series(self, which: str) -> list[tuple[str, str, list[tuple[float, float]]]]:
        """(run name, plotext colour, points) of "loss" or "dev_ppl" on the current x axis; a log axis
        keeps only positive values."""
        out = []
        for i, run in enumerate(self.runs):
            points = run.curve(which, self.x)
            if self.log_y:
                points = [(x, y) for x, y in points if y > 0 and math.isfinite(y)]
            out.append((run.name, colour(i)[0], points))
        return out

    def columns(self) -> list[str]:
        numbers = ["best dev ppl", "Δ ppl", "time", "tokens/s", "Δ speed"]  # first: a wide table keeps them
        return ["run", *numbers, *self.summary.get("differing", [])]

    def rows(self) -> list[list[str]]:
        """One row of text cells per run, in the order of `runs` (the first cell is the run's name)."""
        rows = []
        for i, row in enumerate(self.summary.get("runs", [])):
            base = i == self.baseline
            ppl, speed = row["best_dev_ppl"], row["tokens_per_s"]
            delta, ratio = row["delta"].get("best_dev_ppl"), row["ratio"].get("tokens_per_s")
            rows.append(
                [
                    row["name"] + (" (baseline)" if base else ""),
                    f"{ppl:.2f}" if ppl is not None else "–",
                    "" if base or delta is None else f"{delta:+.2f}",
                    duration(row["elapsed_s"]),
                    f"{speed:,.0f}" if speed is not None else "–",
                    "" if base or ratio is None else f"{(ratio - 1) * 100:+.0f}%",
                    *(short(v) for v in row["settings"].values()),
                ]
            )
        return rows

    def shared(self) -> str:
        same = self.summary.get("same", {})
        keep = ("corpus", "optimizer", "hidden_size", "num_layers", "batch_size", "lr", "seq_mode")
        return " · ".join(f"{k} {short(same[k])}" for k in keep if k in same)
