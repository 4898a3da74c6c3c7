"""Train — live: the run the app owns, drawn from its RunState (leaving this screen leaves the run alone)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, Static

from poemtui.state.training import RunState
from poemtui.throttle import Throttle
from poemtui.widgets.format import couplet_rows
from poemtui.widgets.run_chart import RunChart
from poemtui.widgets.run_stats import RunStats

NO_RUN = """\
[b]No training run yet.[/b]

Press [b]ctrl+t[/b] to configure one (the [i]quick[/i] preset learns within a minute on a CPU),
or pick a checkpoint with [b]ctrl+o[/b] and resume it with [b]r[/b]."""

STATUS_CLASSES = ("-starting", "-running", "-stopping", "-done", "-failed")
NUMBERS_EVERY_S = 0.25  # redraw the numbers at most 4 times a second: smooth to the eye, cheap for the CPU
CHART_EVERY_S = 1.0  # and the chart, which costs more to draw, at most this often


class LiveScreen(Screen):
    CSS_PATH = "train_live.tcss"
    TITLE = "Train"
    SUB_TITLE = "live"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop", id="live.stop"),
        Binding("g", "generate", "Write poems", id="live.generate"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._drawn_version = -1
        self._numbers = Throttle(self, NUMBERS_EVERY_S, self.redraw)  # batch events: tens a second
        self._last_chart = 0.0
        self._drawn: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(NO_RUN, id="no-run")
        with Vertical(id="run"):
            yield Static("", id="status")
            yield RunStats(id="stats")
            yield ProgressBar(id="progress", show_eta=False)
            with Horizontal(id="body"):
                yield RunChart(id="chart")
                with Vertical(id="side"):
                    yield Static("sample poem", id="sample-title", classes="section-title")
                    yield Static("", id="sample")
                    yield Label("latest checkpoint", classes="section-title")
                    yield Static("–", id="checkpoint")
        yield Footer(compact=True)

    @property
    def state(self) -> RunState | None:
        return self.app.run_state

    def on_mount(self) -> None:
        self.app.training_signal.subscribe(self, self.training_changed)
        self.redraw(force=True, chart=True)

    def on_screen_resume(self) -> None:
        self.redraw(force=True, chart=True)

    def training_changed(self, kind: str) -> None:
        """The run changed (the app's training_signal); batch updates are throttled, everything else is drawn
        at once. Not shown, the screen draws nothing: it redraws all when shown again."""
        if self not in self.app.screen_stack:
            return
        if kind != "batch":
            # An evaluation redraws the numbers at once; the chart keeps its own pace (a short epoch can
            # bring several evaluations a second, and the chart is the costliest part to draw).
            ended = kind in ("done", "exit")
            self.redraw(force=ended or kind == "eval", chart=ended)
            return
        self._numbers()

    def redraw(self, force: bool = False, chart: bool = False) -> None:
        s = self.state
        self._show_part("#no-run", s is None)
        self._show_part("#run", s is not None)
        if s is None or (s.version == self._drawn_version and not force):
            return
        self._drawn_version = s.version
        now = time.monotonic()
        self._numbers.ran()
        self._draw_status(s)
        self.query_one(RunStats).show(s)
        bar = self.query_one(ProgressBar)
        self._show_part(
            "#progress", bool(s.total_steps)
        )  # no total before the first batch (and no animation)
        if s.total_steps:
            bar.update(total=s.total_steps, progress=s.steps_done)
        if chart or now - self._last_chart >= CHART_EVERY_S:
            self._last_chart = now
            self.query_one(RunChart).show(s.losses, s.evals)
        self._draw_sample(s)
        self._draw_checkpoint(s)

    # Drawing costs time the training could use: each part is only touched when what it shows changed.

    def _show_part(self, selector: str, shown: bool) -> None:
        widget = self.query_one(selector)
        if widget.display != shown:
            widget.display = shown

    def _update(self, selector: str, content: Text | str) -> None:
        key = content.markup if isinstance(content, Text) else content
        if self._drawn.get(selector) != key:
            self._drawn[selector] = key
            self.query_one(selector, Static).update(content)

    def _draw_status(self, s: RunState) -> None:
        status = self.query_one("#status", Static)
        kind = {"starting": "-starting", "running": "-running", "stopping": "-stopping", "failed": "-failed"}
        css = kind.get(s.status, "-done")
        if not status.has_class(css):
            status.remove_class(*STATUS_CLASSES).add_class(css)
            self.refresh_bindings()  # Stop and Write depend on the status
        icon = {"-starting": "…", "-running": "●", "-stopping": "■", "-failed": "✖", "-done": "✔"}[css]
        name = s.run_dir.name + (" (resumed)" if s.resume else "")
        series = ("   " + s.series, "dim") if s.series else ""
        self._update(
            "#status",
            Text.assemble(f"{icon} ", (s.status_line(), "bold"), "   ", ("run ", "dim"), name, series),
        )

    def _draw_sample(self, s: RunState) -> None:
        if s.sample:
            self._update("#sample-title", f"sample poem · {s.sample_at}")
            self._update("#sample", Text("\n".join(couplet_rows(s.sample))))
        else:
            self._update("#sample", "[dim]one appears at every evaluation[/dim]")

    def _draw_checkpoint(self, s: RunState) -> None:
        c = s.last_checkpoint
        if c is None:
            text = Text("none yet: one is saved at each evaluation that improves", style="dim")
        else:
            text = Text.assemble(Path(c["path"]).name, ("  best" if c.get("best") else "", "bold"))
        if s.done and s.done.get("best_path"):
            text.append_text(Text.assemble(("\nbest: ", "dim"), Path(s.done["best_path"]).name))
        self._update("#checkpoint", text)
        if s.latest_path and not self._drawn.get("bindings-ready"):
            self._drawn["bindings-ready"] = "yes"
            self.refresh_bindings()

    # --- actions -------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        s = self.state
        if action == "stop":
            return bool(s and s.status in ("starting", "running"))
        if action == "generate":
            return bool(s and s.latest_path)
        return True

    def action_stop(self) -> None:
        self.app.confirm_stop()

    def action_generate(self) -> None:
        s = self.state
        if s is None:
            return
        path = s.latest_path
        if path:
            self.app.open_generate(Path(path))
