"""Ask where to save this session's poems (a text file), and refuse a path that cannot be written."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class SavePoemsDialog(ModalScreen[Path | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="save.cancel")]

    def __init__(self, default: Path, count: int):
        super().__init__()
        self.default = default
        self.count = count

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"Save {self.count} poem{'s' * (self.count != 1)} to a text file", classes="dialog-title"
            )
            yield Input(str(self.default), id="path")
            yield Static("", classes="dialog-error", id="save-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save (enter)", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def _problem(self, text: str) -> str | None:
        if not text.strip():
            return "type a file name"
        path = Path(text).expanduser()
        if path.is_dir():
            return "that is a folder; add a file name"
        if not path.parent.exists():
            return f"no folder {path.parent}"
        return None

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#save-error", Static).update(self._problem(event.value) or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._save(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save(self.query_one("#path", Input).value)
        else:
            self.dismiss(None)

    def _save(self, text: str) -> None:
        problem = self._problem(text)
        if problem:
            self.query_one("#save-error", Static).update(problem)
            return
        self.dismiss(Path(text).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
