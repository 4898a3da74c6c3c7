"""One request's poems in the Generate screen: a heading with the settings, then the poems as they grow.

Once complete, each poem can show its tones: a row of marks under each row of characters (○ 平, ● 仄,
◐ either, ？ unknown; a CJK character is two cells wide, so each mark is padded to its character's width),
the rhyme characters underlined with ◎ after them, and the 格律 checker's verdict under the poem.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from poemtui.state.poems import settings_line
from poemtui.state.tones import RHYME_MARK, ToneView, body
from poemtui.widgets.format import couplet_rows

FAULT_STYLE = "bold red"
RHYME_STYLE = "bold underline"


def _cell(mark: str, width: int) -> str:
    """`mark` padded to `width` cells, so that it sits under a character of that width."""
    return mark + " " * max(0, width - cell_len(mark))


def toned_poem(view: ToneView, per_row: int = 2) -> Text:
    """The poem a couplet per row, each row followed by its tone marks, column for column."""
    out = Text()
    rhyme_lines = {i for i, _ in view.rhymes}
    for start in range(0, len(view.lines), per_row):
        chars, marks = Text(), Text()
        for i in range(start, min(start + per_row, len(view.lines))):
            line = view.lines[i]
            text = body(line)
            for j, ch in enumerate(text):
                fault = (i, j) in view.faults
                chars.append(ch, RHYME_STYLE if (i, j) in view.rhymes else "")
                mark = view.marks[i][j] if j < len(view.marks[i]) else ""
                marks.append(_cell(mark, cell_len(ch)), FAULT_STYLE if fault else "")
            punctuation = line[len(text) :]
            chars.append(punctuation)
            if i in rhyme_lines:
                missed = (i, len(text) - 1) in view.faults
                marks.append(_cell(RHYME_MARK, cell_len(punctuation)), FAULT_STYLE if missed else "bold")
            else:
                marks.append(" " * cell_len(punctuation))
        marks.rstrip()
        if start:
            out.append("\n")
        out.append_text(chars)
        out.append("\n")
        out.append_text(marks)
    return out


class PoemBlock(Vertical):
    DEFAULT_CSS = """
    PoemBlock { height: auto; margin-bottom: 1; }
    PoemBlock .poem-heading { color: $text-muted; height: auto; }
    PoemBlock .poem { height: auto; padding-left: 2; margin-top: 1; }
    """

    def __init__(self, number: int, settings: dict, checkpoint: str, tones: bool = True):
        super().__init__(id=f"generation-{number}")
        self.number = number
        self.settings = settings
        self.checkpoint = checkpoint
        self.texts: list[str] = []
        self.scores: list[float] = []
        self.views: list[ToneView | None] = []
        self.tones = tones  # show the marks under the characters (the verdict is shown either way)
        self.done = False
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        heading = f"#{self.number} · {settings_line(self.settings)} · {self.checkpoint}"
        yield Static(Text(heading), classes="poem-heading")
        yield Static("[dim]writing…[/dim]", classes="poem", id=f"poems-{self.number}")

    def show(self, texts: list[str]) -> None:
        """The poems so far, as they are sampled (plain: the tones come when they are complete)."""
        self.texts = list(texts)
        self._draw()

    def finish(self, texts: list[str], scores: list[float], views: list[ToneView | None]) -> None:
        self.done = True
        self.texts, self.scores, self.views = list(texts), scores, views
        self._draw()

    def fail(self, message: str) -> None:
        self.done = True
        self.error = message
        self._draw()

    def set_tones(self, shown: bool) -> None:
        if shown != self.tones:
            self.tones = shown
            if self.done:
                self._draw()

    def _draw(self) -> None:
        poem = self.query_one(".poem", Static)
        if self.error is not None:
            poem.update(Text(self.error, style="bold red"))
            return
        if not self.texts:
            poem.update(Text("writing…", style="dim"))
            return
        out = Text()
        for i, text in enumerate(self.texts):
            if i:
                out.append("\n\n")
            if len(self.texts) > 1:
                out.append(f"{i + 1}.\n", style="dim")
            view = self.views[i] if i < len(self.views) else None
            if view is not None and self.tones:
                out.append_text(toned_poem(view))
            else:
                out.append("\n".join(couplet_rows(text)))
            caption = []
            if i < len(self.scores):
                caption.append((f"mean log-probability {self.scores[i]:.2f}", "dim"))
            if view is not None and view.verdict:
                caption.append((view.verdict, "green" if view.passed else "yellow"))
            for k, (words, style) in enumerate(caption):
                out.append(" · " if k else "\n", style="dim")
                out.append(words, style=style)
        poem.update(out)
