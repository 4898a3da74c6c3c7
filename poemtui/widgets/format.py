"""Number and time formats shared by the widgets (one place, so every screen says things the same way)."""

from __future__ import annotations

import math

from core.corpus.lines import split_lines


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def number(value: float | None, digits: int = 2) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}"


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}".replace("e-0", "e-")


def couplet_rows(text: str, per_row: int = 2) -> list[str]:
    """A poem as rows of `per_row` lines each (a couplet per row reads as printed anthologies do)."""
    lines = split_lines(text, keep_marks=True)
    return ["".join(lines[i : i + per_row]) for i in range(0, len(lines), per_row)]
