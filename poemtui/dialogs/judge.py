"""Judging a checkpoint from the command palette: a progress dialog over a worker thread of the app.

The worker belongs to the app, not to the dialog: hiding the dialog (escape) leaves the judge running, and
a notification says when its result is written (`<stem>.judge.json` beside the checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar, Static
from textual.worker import get_current_worker

from poemtui.state.judgement import JUDGE_POEMS, STAGE_NAMES, judge_checkpoint, judgement_path, pct


class JudgeCancelled(Exception):
    """Raised in the judge's thread at a stage boundary once its worker is cancelled."""


class JudgeDialog(ModalScreen[None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "hide", "Hide", id="judge.hide")]

    def __init__(self, checkpoint: Path, poems: int):
        super().__init__()
        self.checkpoint, self.poems = checkpoint, poems
        self.stage = ""
        self.result: dict | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Judging {self.checkpoint.name}", classes="dialog-title")
            yield Static(
                f"Up to {self.poems} poems sampled with the default settings, each starting and shaped like a"
                " real test poem, then two classifiers try to tell them apart (0.5: they cannot).",
                classes="dialog-body",
            )
            yield ProgressBar(total=len(STAGE_NAMES), show_eta=False, id="judge-progress")
            yield Static("starting…", id="judge-stage", classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Hide (esc)", id="hide", variant="primary")

    def show_stage(self, name: str) -> None:
        self.stage = name
        self.query_one(ProgressBar).update(progress=list(STAGE_NAMES).index(name))
        self.query_one("#judge-stage", Static).update(STAGE_NAMES[name] + "…")

    def finish(self, result: dict | None, error: str | None) -> None:
        self.result, self.error = result, error
        self.query_one(ProgressBar).update(progress=len(STAGE_NAMES))
        self.query_one("#judge-stage", Static).update(error or summary(result))
        self.query_one("#hide", Button).label = "Close (esc)"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss()

    def action_hide(self) -> None:
        self.dismiss()


def summary(result: dict) -> str:
    g, r, d = result["generated"], result["real"], result["discriminators"]
    return (
        f"rhyme {pct(g['rhyme_rate'])} (real {pct(r['rhyme_rate'])}) · 格律 {pct(g['gelv_passed'])}"
        f" (real {pct(r['gelv_passed'])}) · n-gram {d['ngram']['accuracy']:.3f}"
        f" · neural {d['neural']['accuracy']:.3f}"
    )


def selected_checkpoint(app: App, screen) -> Path | None:
    """The checkpoint the palette's judge would judge: the one highlighted on the Checkpoints screen, or the
    one the Generate screen writes with; None elsewhere, or where that file cannot be read."""
    from poemtui.screens.checkpoints import CheckpointsScreen
    from poemtui.screens.generate import GenerateScreen

    if isinstance(screen, CheckpointsScreen) and screen.is_mounted:
        entry = screen.selected
        return entry.path if entry is not None and entry.readable else None
    if isinstance(screen, GenerateScreen) and screen.sampler is not None:
        return screen.checkpoint
    return None


def start_judging(app: App, checkpoint: Path, poems: int = JUDGE_POEMS) -> JudgeDialog:
    """Show the dialog and judge in a thread; when done, notify and refresh any checkpoint detail panel."""
    dialog = JudgeDialog(checkpoint, poems)
    app.push_screen(dialog)

    def work() -> None:
        worker = get_current_worker()

        def on_stage(name: str) -> None:
            if worker.is_cancelled:  # the app is quitting: stop at the next stage, write nothing
                raise JudgeCancelled
            if dialog.is_mounted:
                app.call_from_thread(dialog.show_stage, name)

        try:
            result, error = judge_checkpoint(checkpoint, poems=poems, on_stage=on_stage), None
        except JudgeCancelled:
            return
        except Exception as exc:  # a PoemError (too few poems, an unreadable corpus) or a broken file
            result, error = None, f"not judged: {exc}"
        app.call_from_thread(done, result, error)

    def done(result: dict | None, error: str | None) -> None:
        if dialog.is_mounted:
            dialog.finish(result, error)
        if error:
            app.notify(error, title=f"Judge {checkpoint.name}", severity="error")
            return
        written = judgement_path(checkpoint).name
        app.notify(f"{summary(result)}\nwritten to {written}", title=f"Judged {checkpoint.name}")
        from poemtui.widgets.checkpoint_detail import CheckpointDetail

        for screen in app.screen_stack:
            for detail in screen.query(CheckpointDetail):
                detail.refresh_judgement()

    app.run_worker(work, thread=True, group="judge", name=f"judge {checkpoint}", exit_on_error=False)
    return dialog
