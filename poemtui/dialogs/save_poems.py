"""Ask where to save this session's poems (a text file), and refuse a path that cannot be written.

An existing file is never replaced: the dialog says so as the path is typed ("exists: the poems are added at
its end", and the button reads Append), and the poems are appended to it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


def path_problem(text: str) -> str | None:
    """Why the poems cannot be saved at `text`, or None."""
    if not text.strip():
        return "type a file name"
    path = Path(text).expanduser()
    if path.is_dir():
        return "that is a folder; add a file name"
    if not path.parent.exists():
        return f"no folder {path.parent}"
    if path.exists() and not path.is_file():
        return "that is not a regular file"
    return None


class SavePoemsDialog(ModalScreen[Path | None]):
    """Returns the file to save to (appended to when it exists), or None."""

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
            yield Static("", classes="dialog-note", id="save-note")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Save (enter)", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()
        self._check(str(self.default))

    def _check(self, text: str) -> str | None:
        """Say what is wrong with the path, or that it exists and will be appended to."""
        problem = path_problem(text)
        exists = problem is None and Path(text).expanduser().exists()
        self.query_one("#save-error", Static).update(problem or "")
        note = self.query_one("#save-note", Static)
        note.update("this file exists: the poems are added at its end (nothing in it is replaced)")
        note.display = exists
        self.query_one("#save", Button).label = "Append (enter)" if exists else "Save (enter)"
        return problem

    def on_input_changed(self, event: Input.Changed) -> None:
        self._check(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._save(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save(self.query_one("#path", Input).value)
        else:
            self.dismiss(None)

    def _save(self, text: str) -> None:
        if self._check(text) is None:
            self.dismiss(Path(text).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
