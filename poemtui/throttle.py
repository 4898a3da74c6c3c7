"""At most one call every so often, and the last request never lost: for redraws driven by training events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only its set_timer is used: importing this module does not load textual
    from textual.dom import DOMNode


class Throttle:
    """Calling it runs `fn` at once if `fn` last ran `every` seconds ago or more, else once when that time is
    up (a single Textual timer on `node`, however many calls come meanwhile). `ran()` notes a run by
    another path, e.g. a redraw forced by an evaluation."""

    def __init__(self, node: DOMNode, every: float, fn: Callable[[], object]):
        self.node, self.every, self.fn = node, every, fn
        self.last = 0.0
        self._timer = None

    def __call__(self) -> None:
        wait = self.last + self.every - time.monotonic()
        if wait <= 0:
            self._run()
        elif self._timer is None:
            self._timer = self.node.set_timer(wait, self._run)

    def ran(self) -> None:
        self.last = time.monotonic()

    def _run(self) -> None:
        self._timer = None
        self.ran()
        self.fn()
