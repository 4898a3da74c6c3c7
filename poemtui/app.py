"""The workbench application."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class PoemApp(App):
    TITLE = "poemtui"
    SUB_TITLE = "a Tang-poetry LSTM workbench"

    def __init__(self, checkpoints_dir: Path = Path("checkpoints")):
        super().__init__()
        self.checkpoints_dir = checkpoints_dir

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("poemtui — the screens arrive with the training and generation engine.", id="welcome")
        yield Footer()
