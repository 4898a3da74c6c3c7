"""The Generate screen's poems as text: the line that describes a request's settings, and the session's poems
written to a file (appended to an existing one, never replacing it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


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
    elif settings.get("prosody", "none") != "none":
        rhyme = f", rhyme {settings['rhyme']}" if settings.get("rhyme") else ""
        parts.append(f"prosody {settings['prosody']}{rhyme}")
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


def append_poems(path: Path, text: str) -> bool:
    """Write `text` after what `path` holds already (never replacing it); True if the file held something.

    Opened in append mode, so a file that appeared after the user chose the name is not replaced either."""
    with open(path, "a+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        separator = b""
        if size:
            fh.seek(size - 1)
            separator = b"\n" if fh.read(1) == b"\n" else b"\n\n"  # a blank line before this session's poems
        fh.write(separator + text.encode("utf-8"))
    return size > 0
