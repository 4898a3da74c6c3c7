"""Compare: the marked runs' dev perplexity and training loss overlaid, and a table of what differs.

Opened from the Checkpoints screen (space marks runs, c compares them) or from the palette (the optimizer
experiment's runs). x cycles the x axis (step, tokens seen, minutes), l the log scale, b pins the highlighted
run as the baseline of the deltas; esc goes back. `python -m core.runs compare RUN RUN …` prints the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from poemtui.state.compare import X_LABELS, Comparison, colour
from poemtui.widgets.run_chart import thin


class CompareScreen(Screen):
    CSS_PATH = "compare.tcss"
    TITLE = "Compare runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="compare.back"),
        Binding("x", "axis", "X axis", id="compare.axis"),
        Binding("l", "log", "Log y", id="compare.log"),
        Binding("b", "baseline", "Baseline", id="compare.baseline"),
    ]

    def __init__(self, paths: list[Path], title: str = "") -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.view: Comparison | None = None
        self.heading = title

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the runs…", id="compare-summary")
        with Horizontal(id="charts"):
            yield PlotextPlot(id="chart-ppl")
            yield PlotextPlot(id="chart-loss")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = self.heading or f"{len(self.paths)} runs"
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        view = Comparison.load(self.paths)
        self.app.call_from_thread(self.show, view)

    def show(self, view: Comparison) -> None:
        self.view = view
        self.draw()

    def draw(self) -> None:
        view = self.view
        if view is None:
            return
        names = ", ".join(r.name for r in view.runs)
        shared = view.shared()
        self.query_one("#compare-summary", Static).update(
            f"{len(view.runs)} runs: {names}" + (f"\n[dim]all: {shared}[/dim]" if shared else "")
        )
        self._plot("#chart-ppl", "dev_ppl", "dev perplexity")
        self._plot("#chart-loss", "loss", "training loss")
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*view.columns())
        for i, cells in enumerate(view.rows()):
            rich = colour(i)[1]
            first = Text("■ ", style=rich) + Text(cells[0], style="bold" if i == view.baseline else "")
            table.add_row(first, *(Text(c, justify="right") for c in cells[1:]), key=str(i))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _plot(self, selector: str, which: str, title: str) -> None:
        view = self.view
        assert view is not None
        plot = self.query_one(selector, PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        series = view.series(which)
        drawn, low, high = False, math.inf, -math.inf
        for name, plot_colour, points in series:
            if not points:
                continue
            xs, ys = zip(*thin(points, 300), strict=True)
            if view.log_y:  # drawn as log10 with the real values on the ticks (plotext's own log scale
                ys = tuple(math.log10(y) for y in ys)  # fails on some figures)
            low, high = min(low, *ys), max(high, *ys)
            plt.plot(list(xs), list(ys), label=name, marker="braille", color=plot_colour)
            drawn = True
        plt.title(f"{title}{' (log)' if view.log_y else ''}" if drawn else f"{title}: no points recorded")
        plt.xlabel(X_LABELS[view.x])
        if drawn and view.log_y:
            ticks = [low + (high - low) * k / 4 for k in range(5)] if high > low else [low]
            plt.yticks(ticks, [f"{10**t:.3g}" for t in ticks])
        plot.refresh()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_axis(self) -> None:
        if self.view is not None:
            self.notify(f"x: {X_LABELS[self.view.next_x()]}", timeout=2)
            self.draw()

    def action_log(self) -> None:
        if self.view is not None:
            self.view.log_y = not self.view.log_y
            self.draw()

    def action_baseline(self) -> None:
        if self.view is not None and self.view.runs:
            row = self.query_one(DataTable).cursor_row
            self.view.pin(row)
            self.draw()
            self.notify(f"deltas against {self.view.runs[row].name}", title="Baseline", timeout=3)
