"""One line under the Generate screen's options: the session's poems against real poems of the same forms.

The real figures of the checkpoint's corpus are computed in a worker thread the first time a corpus is
seen (poemtui.state.judgement caches them per corpus), so choosing a checkpoint never waits for them.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.widgets import Static

from poemtui.state import catalog
from poemtui.state.judgement import RealForms, figures_line, real_forms, session_figures


class SessionFigures(Static):
    DEFAULT_CSS = "SessionFigures { height: auto; color: $text-muted; padding: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.checkpoint: Path | None = None
        self.real: RealForms | None = None
        self.texts: list[str] = []
        self.figures: dict | None = None  # the last figures shown (tests read them)
        self.display = False  # until there are poems

    def set_checkpoint(self, path: Path | None) -> None:
        """Poems are now written with `path`: its corpus's real figures, once loaded, are the reference."""
        if path == self.checkpoint:
            return
        self.checkpoint, self.real = path, None
        self.redraw()
        if path is not None:
            self.load_real(path)

    @work(thread=True, exclusive=True, group="real-figures", exit_on_error=False)
    def load_real(self, path: Path) -> None:
        recorded = catalog.read_entry(path, path.parent.name).section("corpus")
        try:
            real = real_forms(recorded) if recorded.get("name") else None
        except Exception:  # the corpus is gone or unreadable: there is nothing to compare with
            real = None
        self.app.call_from_thread(self._got_real, path, real)

    def _got_real(self, path: Path, real: RealForms | None) -> None:
        if path == self.checkpoint:
            self.real = real
            self.redraw()

    def set_poems(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.redraw()

    def redraw(self) -> None:
        self.display = bool(self.texts)
        if not self.texts:
            self.figures = None
            self.update("")
        elif self.real is None:
            self.figures = None
            waiting = f"{len(self.texts)} poems · measuring the real poems of the corpus…"
            self.update(Text(waiting, style="dim"))
        else:
            self.figures = session_figures(self.texts, self.real)
            self.update(figures_line(self.figures))
