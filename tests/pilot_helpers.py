"""What the Pilot tests share: waiting for the app, and reading what it shows as plain text."""

from __future__ import annotations

import io
import time

from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.widgets import Static


async def wait_for(
    pilot, condition, timeout: float = 60.0, what: str = "condition", poll: float = 0.02
) -> None:
    """Let the app run until `condition()` holds (training, loading and sampling happen outside the test's
    control); on a timeout, the failure shows what is on screen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            shown = f"{screen_text(pilot.app)}\n{toasts(pilot.app)}".strip()
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; on screen:\n{shown}")
        await pilot.pause(poll)


def text_of(widget) -> str:
    """What a Static shows, as plain text (markup resolved, rich tables rendered)."""
    content = widget.content
    if isinstance(content, str):
        return Content.from_markup(content).plain
    if isinstance(content, Text | Content):
        return content.plain
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(content)
    return console.file.getvalue()


def screen_text(app) -> str:
    return "\n".join(text_of(w) for w in app.screen.query(Static) if w.display)


def toasts(app) -> str:
    """The notifications on screen now."""
    return "\n".join(toast.render().plain for toast in app.screen.query("Toast"))
