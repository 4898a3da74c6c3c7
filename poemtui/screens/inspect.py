"""Inspect: one poem inside a checkpoint's LSTM (core.inspection; `python -m core.inspect` prints the same).

Type or paste a poem and press enter: each character is coloured by its surprisal (green expected, red
surprising); ←/→ move a cursor over it and show the model's top-5 predictions for that place; the heat map
shows the input, forget and output gates and the cell state of one unit over the poem (u: the next unit);
the units that track the line position, the line index and the rhyme position over the dev split are
listed with their correlation; ‖∂L/∂h_t‖ shows how far back the last character's loss reaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from poemtui.widgets import inspect_view as iv

EXAMPLE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


class InspectScreen(Screen):
    CSS_PATH = "inspect.tcss"
    TITLE = "Inspect"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="inspect.back"),
        Binding("left", "move(-1)", "←", id="inspect.left", show=False),
        Binding("right", "move(1)", "→ char", id="inspect.right"),
        Binding("u", "next_unit", "Next unit", id="inspect.unit"),
        Binding("e", "edit", "Edit poem", id="inspect.edit"),
    ]

    def __init__(self, checkpoint: Path, poem: str = EXAMPLE) -> None:
        super().__init__()
        self.checkpoint = Path(checkpoint)
        self.poem = poem
        self.inspector = None
        self.result: dict | None = None
        self.cursor = 0
        self.unit = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(self.poem, placeholder="type or paste a poem; enter inspects it", id="poem-input")
        with Horizontal(id="inspect-body"):
            with Vertical(id="inspect-left"):
                yield Static("loading the checkpoint…", id="poem-view")
                yield Static("", id="top5")
                yield Static("", id="heat")
                yield Static("", id="grads")
            yield Static("", id="units")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.checkpoint.parent.name}/{self.checkpoint.name}"
        self.run_inspect(self.poem)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # in the input, the arrows and letters are the input's; esc or enter leaves it
        return not (action in ("move", "next_unit", "edit") and isinstance(self.focused, Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.poem = event.value
        self.run_inspect(event.value)
        self.set_focus(None)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def run_inspect(self, text: str) -> None:
        from core.errors import PoemError
        from core.inspection import Inspector

        try:
            if self.inspector is None:
                self.inspector = Inspector.load(self.checkpoint)
            self.app.call_from_thread(self._status, "finding the units that track the poem's structure…")
            try:
                units = self.inspector.units()
            except (PoemError, OSError, ValueError) as exc:  # e.g. the run's corpus file is gone
                units = {}
                self.app.call_from_thread(self.notify, str(exc), title="No unit search", severity="warning")
            result = self.inspector.inspect(text, units=units)
        except (PoemError, OSError, ValueError) as exc:
            self.app.call_from_thread(self._status, f"[b red]{exc}[/]")
            return
        self.app.call_from_thread(self.show, result)

    def _status(self, text: str) -> None:
        self.query_one("#poem-view", Static).update(text)

    def show(self, result: dict) -> None:
        if self.result is None:  # the first result: the keys move the cursor at once (e edits the poem)
            self.set_focus(None)
            self.refresh_bindings()
        self.result = result
        self.cursor = min(self.cursor, len(result["chars"]) - 1)
        self.draw()

    def draw(self) -> None:
        r = self.result
        if r is None:
            return
        view = iv.poem_text(r, self.cursor)
        view.append(f"\nperplexity {r['perplexity']:.1f} · green: expected, red: surprising", style="dim")
        self.query_one("#poem-view", Static).update(view)
        self.query_one("#top5", Static).update(iv.top5_text(r, self.cursor))
        self.query_one("#heat", Static).update(iv.heat_map(r, self.unit))
        self.query_one("#grads", Static).update(iv.grad_text(r))
        self.query_one("#units", Static).update(iv.units_text(r))

    def action_move(self, step: int) -> None:
        if self.result is not None:
            self.cursor = (self.cursor + step) % len(self.result["chars"])
            self.draw()

    def action_next_unit(self) -> None:
        if self.result is not None:
            self.unit = (self.unit + 1) % max(1, len(iv.units_of(self.result)))
            self.draw()

    def action_edit(self) -> None:
        self.query_one("#poem-input", Input).focus()
        self.refresh_bindings()

    def action_back(self) -> None:
        if isinstance(self.focused, Input) and self.result is not None:
            self.set_focus(None)
            self.refresh_bindings()
            return
        self.app.pop_screen()
