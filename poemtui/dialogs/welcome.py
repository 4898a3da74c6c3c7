"""First run: there is no checkpoint yet, so say what the workbench is for and offer a quick first run."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

WELCOME = """\
There is no checkpoint in [b]{folder}[/b] yet: a model has to learn before it can write.

[b]Quick start[/b] trains a small LSTM (128 units) on 唐诗三百首. On a 2-core CPU it takes under a minute; \
you watch the loss fall, the dev perplexity drop and the sample poems turn from noise into lines of \
five or seven characters. Stop it whenever you like: a checkpoint is saved, and you can write poems with it.

Or configure a run yourself (corpus, model size, optimizer, epochs…)."""


class WelcomeDialog(ModalScreen[str | None]):
    """Returns "quick" (start the quick preset now), "configure" (open the form) or None (look around)."""

    CSS_PATH = "dialog.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "choose('quick')", "Quick start", id="welcome.quick"),
        Binding("c", "choose('configure')", "Configure", id="welcome.configure"),
        Binding("escape", "choose(None)", "Close", id="welcome.close"),
    ]

    def __init__(self, checkpoints_dir: Path):
        super().__init__()
        self.checkpoints_dir = checkpoints_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="welcome"):
            yield Label("Welcome to poemtui", classes="dialog-title")
            yield Static(WELCOME.format(folder=self.checkpoints_dir), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Look around (esc)", id="close")
                yield Button("Configure (c)", id="configure")
                yield Button("Quick start (q)", id="quick", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#quick", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "close" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
