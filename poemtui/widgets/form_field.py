"""One labelled form field: a compact Input or Select, with its problem explained right under it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static


class FormField(Vertical):
    """`name` identifies the field; the control's id is `field-<name>` so screens can find it."""

    DEFAULT_CSS = """
    FormField { height: auto; }
    FormField > Horizontal { height: 1; }
    FormField Label.field-label { width: 12; color: $text-muted; }
    FormField Input, FormField Select { width: 1fr; }
    FormField .field-error { display: none; color: $text-error; padding-left: 12; height: auto; }
    FormField.-invalid .field-error { display: block; }
    FormField.-invalid Label.field-label { color: $text-error; }
    """

    def __init__(
        self,
        name: str,
        label: str,
        *,
        value: str = "",
        choices: tuple[str, ...] = (),
        placeholder: str = "",
        help_text: str = "",
        id: str | None = None,
    ):
        super().__init__(id=id or f"row-{name}")
        self.field_name = name
        self.label = label
        self.choices = choices
        self.initial = value
        self.placeholder = placeholder
        self.help = help_text
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label, classes="field-label")
            if self.choices:
                yield Select(
                    [(c, c) for c in self.choices],
                    value=self.initial or self.choices[0],
                    allow_blank=False,
                    compact=True,
                    id=f"field-{self.field_name}",
                )
            else:
                yield Input(
                    self.initial, placeholder=self.placeholder, compact=True, id=f"field-{self.field_name}"
                )
        yield Static("", classes="field-error")

    @property
    def control(self) -> Input | Select:
        return self.query_one(f"#field-{self.field_name}")  # type: ignore[return-value]

    @property
    def text(self) -> str:
        control = self.control
        return str(control.value) if isinstance(control, Select) else control.value

    def set_text(self, text: str) -> None:
        control = self.control
        if isinstance(control, Select):
            control.value = text if text in self.choices else self.choices[0]
        else:
            control.value = text

    def set_error(self, message: str | None) -> None:
        if message == self.error:
            return  # checked on every key press: touch the screen only when the verdict changes
        self.error = message
        self.set_class(bool(message), "-invalid")
        self.query_one(".field-error", Static).update(f"↳ {message}" if message else "")
