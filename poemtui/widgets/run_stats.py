"""The live numbers of a training run: position, losses, perplexities, speed and time."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from poemtui.state.training import RunState
from poemtui.widgets.format import duration, number, rate


def _cell(label: str, value: str) -> Text:
    return Text.assemble((f"{label} ", "dim"), (value, "bold"))


class RunStats(Static):
    """A grid of label/value pairs, redrawn from a RunState."""

    DEFAULT_CSS = """
    RunStats { height: auto; }
    """

    def show(self, s: RunState) -> None:
        cells = [
            _cell(
                "epoch", f"{s.epoch}/{s.epochs}" if s.epochs and not s.step_limited else f"{s.epoch or '–'}"
            ),
            _cell("batch", f"{s.batch}/{s.batches}" if s.batches else "–"),
            _cell("step", f"{s.step:,}/{s.max_steps:,}" if s.step_limited and s.max_steps else f"{s.step:,}"),
            _cell("lr", rate(s.lr)),
            _cell("loss", number(s.loss, 3)),
            _cell("dev loss", number(s.dev_loss, 3)),
            _cell("dev ppl", number(s.dev_ppl)),
            _cell("best", number(s.best_dev_ppl)),
            _cell("tokens/s", number(s.tokens_per_s, 0)),
            _cell("elapsed", duration(s.elapsed_s)),
            _cell("ETA", duration(s.eta_s()) if s.live else "–"),
            _cell("evals", str(len(s.evals))),
        ]
        grid = Table.grid(expand=True, padding=(0, 1))
        for _ in range(4):
            grid.add_column(ratio=1, no_wrap=True)
        for i in range(0, len(cells), 4):
            grid.add_row(*cells[i : i + 4])
        self.update(grid, layout=False)  # always three rows: no layout pass needed
