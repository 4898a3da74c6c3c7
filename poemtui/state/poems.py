"""The Generate screen's poems as text: the line that describes a request's settings, and the session's poems
as a file's text."""

from __future__ import annotations

import time
from collections.abc import Iterable


def settings_line(settings: dict) -> str:
    """`seed 「月」 · form 5×4 · 格律, rhyme 东 · τ 0.8 · top-k 40 · top-p 0.9 · rng 7`."""
    parts = [f"seed 「{settings['start']}」" if settings.get("start") else "no seed"]
    if settings.get("acrostic"):
        parts.append(f"acrostic 「{settings['acrostic']}」")
    form = settings.get("form", "auto")
    if form in ("5", "7"):
        form = f"{form}×{settings.get('lines') or 4}"
    parts.append(f"form {form}")
    if settings.get("gelv"):
        parts.append(f"格律, rhyme {settings['rhyme']}" if settings.get("rhyme") else "格律")
    parts += [
        f"τ {settings.get('temperature')}",
        f"top-k {settings.get('top_k')}",
        f"top-p {settings.get('top_p')}",
    ]
    if settings.get("seed") is not None:
        parts.append(f"rng {settings['seed']}")
    return " · ".join(parts)


def poems_file_text(requests: Iterable[tuple[str, dict, list[str]]]) -> str:
    """A header, then per request (checkpoint label, settings, poems) a comment line and one poem a line."""
    out = [f"# poems written with poemtui on {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for checkpoint, settings, texts in requests:
        out.append(f"# {checkpoint} · {settings_line(settings)}")
        out.extend(texts)
        out.append("")
    return "\n".join(out)
