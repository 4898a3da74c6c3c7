"""One request's poems in the Generate screen: a heading with the settings, then the poems as they grow."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from poemtui.widgets.format import poem_lines


def settings_line(settings: dict) -> str:
    parts = [f"seed 「{settings['start']}」" if settings.get("start") else "no seed"]
    if settings.get("acrostic"):
        parts.append(f"acrostic 「{settings['acrostic']}」")
    form = settings.get("form", "auto")
    if form in ("5", "7"):
        form = f"{form}×{settings.get('lines') or 4}"
    parts += [
        f"form {form}",
        f"τ {settings.get('temperature')}",
        f"top-k {settings.get('top_k')}",
        f"top-p {settings.get('top_p')}",
    ]
    if settings.get("seed") is not None:
        parts.append(f"rng {settings['seed']}")
    return " · ".join(parts)


class PoemBlock(Vertical):
    DEFAULT_CSS = """
    PoemBlock { height: auto; margin-bottom: 1; }
    PoemBlock .poem-heading { color: $text-muted; height: auto; }
    PoemBlock .poem { height: auto; padding-left: 2; margin-top: 1; }
    PoemBlock .poem-score { color: $text-muted; padding-left: 2; }
    """

    def __init__(self, number: int, settings: dict, checkpoint: str):
        super().__init__(id=f"generation-{number}")
        self.number = number
        self.settings = settings
        self.checkpoint = checkpoint
        self.texts: list[str] = []
        self.scores: list[float] = []
        self.done = False

    def compose(self) -> ComposeResult:
        heading = f"#{self.number} · {settings_line(self.settings)} · {self.checkpoint}"
        yield Static(Text(heading), classes="poem-heading")
        yield Static("[dim]writing…[/dim]", classes="poem", id=f"poems-{self.number}")

    def show(self, texts: list[str], scores: list[float] | None = None) -> None:
        self.texts = list(texts)
        out = Text()
        for i, text in enumerate(texts):
            if i:
                out.append("\n\n")
            if len(texts) > 1:
                out.append(f"{i + 1}.\n", style="dim")
            out.append("\n".join(poem_lines(text)))
            if scores is not None:
                out.append(f"\nmean log-probability {scores[i]:.2f}", style="dim")
        self.query_one(".poem", Static).update(out if texts else Text("writing…", style="dim"))

    def finish(self, texts: list[str], scores: list[float]) -> None:
        self.done = True
        self.scores = scores
        self.show(texts, scores)

    def fail(self, message: str) -> None:
        self.done = True
        self.query_one(".poem", Static).update(Text(message, style="bold red"))
