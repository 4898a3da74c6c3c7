"""Reading raw poems (lists of paragraphs) from the fetched package or a user's file.

Every fault in a file becomes a CorpusError of one line that names the file: missing, truncated,
not UTF-8, malformed JSON, or JSON without poems.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.corpus.fetch import QUANTANGSHI_GLOB, TANG300_FILE, package_dir, read_marker
from core.errors import CorpusError
from core.paths import read_input

Raw = list[str]  # one poem: its paragraphs, as in the source


def corpus_files(name: str) -> list[Path]:
    """The package files a named corpus is read from, in a fixed order (it decides which duplicate stays).

    The list comes from the fetch marker, so a file deleted since the fetch is reported, not skipped.
    """
    pkg = package_dir()
    listed = sorted(read_marker(pkg).get("files", {}))
    if name == "tang300":
        return [pkg / TANG300_FILE]
    pattern = re.compile(re.escape(QUANTANGSHI_GLOB).replace(r"\*", r"(\d+)"))
    numbered = [(int(m.group(1)), rel) for rel in listed if (m := pattern.fullmatch(rel))]
    if not numbered:
        raise CorpusError(f"{pkg}: no {QUANTANGSHI_GLOB} files; run `python -m core.corpus fetch --force`")
    return [pkg / rel for _, rel in sorted(numbered)]


def read_bytes(path: Path, expected_size: int | None = None) -> bytes:
    """A corpus file's bytes (core.paths.read_input: a FIFO, a device, a folder or a symlink loop is
    refused in one line before anything is read)."""
    try:
        data = read_input(path, "corpus file", CorpusError)
    except CorpusError as exc:
        hint = " (run `python -m core.corpus fetch --force`)" if expected_size is not None else ""
        raise CorpusError(f"{exc}{hint}") from None
    if expected_size is not None and len(data) != expected_size:
        raise CorpusError(f"{path}: truncated or modified ({len(data)} bytes, fetched {expected_size})")
    return data


def decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise CorpusError(f"{path}: malformed JSON (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        fault = "truncated JSON" if at_end else "malformed JSON"
        raise CorpusError(f"{path}: {fault} (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def poems_in_json(path: Path, doc: Any) -> list[Raw]:
    """Every object with a "paragraphs" list, depth first: fits poet.*.json, 蒙学 and the rest."""
    found: list[Raw] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict) and "paragraphs" in node:
            paragraphs = node["paragraphs"]
            if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
                raise CorpusError(f'{path}: poem {len(found) + 1}: "paragraphs" is not a list of strings')
            found.append(paragraphs)
        elif isinstance(node, dict | list):
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(doc)
    if not found:
        raise CorpusError(f'{path}: no poems found (expected objects with a "paragraphs" list of lines)')
    return found


def read_package_files(files: list[Path]) -> list[tuple[Path, bytes]]:
    """The bytes of package files (from corpus_files), checked against the sizes fetch recorded."""
    pkg = package_dir()
    sizes = read_marker(pkg).get("files", {})
    return [(path, read_bytes(path, sizes.get(path.relative_to(pkg).as_posix()))) for path in files]


def parse_package_files(blobs: list[tuple[Path, bytes]]) -> list[Raw]:
    poems: list[Raw] = []
    for path, data in blobs:
        poems.extend(poems_in_json(path, parse_json(path, decode_utf8(path, data))))
    return poems


def parse_user_file(path: Path, data: bytes) -> list[Raw]:
    """JSON in chinese-poetry's format (by extension or a leading [ or {), else UTF-8 text, a poem a line."""
    text = decode_utf8(path, data).removeprefix("\ufeff")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped[:1] in ("[", "{"):
        return poems_in_json(path, parse_json(path, text))
    poems = [[line] for line in text.splitlines() if line.strip()]
    if not poems:
        raise CorpusError(f"{path}: no poems (expected UTF-8 text, one poem a line)")
    return poems
