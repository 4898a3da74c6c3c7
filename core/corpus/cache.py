"""The processed form of a named corpus, kept as JSON under data/cache/ (never pickle).

The fingerprint is a sha256 over the content of every source file, the processing options and
PROCESSING_VERSION. Content rather than sizes and modification times: reading and hashing the 25 MB of
全唐诗 costs about 0.03 s, it survives copies that reset modification times, and the same corpus gets the
same fingerprint on every machine, so a checkpoint's recorded fingerprint can be compared anywhere.
A cache file is used only when its fingerprint and a digest of the processing code both match; anything
else (a changed option, file or line of code, a damaged cache file) means rebuilding it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from core.corpus.fetch import data_dir

# Bump when the processed text of a corpus changes meaning (the fingerprint identifies a corpus).
PROCESSING_VERSION = 2  # 2: splits keyed on the raw source text
CACHE_FORMAT = "poemtui-corpus/1"
_PROCESSING_CODE = ("clean.py", "sources.py", "splits.py", "load.py")


def fingerprint(blobs: list[tuple[Path, bytes]], options: dict) -> str:
    """sha256 over PROCESSING_VERSION, the options, and each source file's name, size and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": PROCESSING_VERSION, **options}, sort_keys=True).encode())
    for path, data in blobs:
        digest.update(f"\n{path.name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def code_digest() -> str:
    """Changes whenever the code that produces a processed corpus changes: stale caches rebuild themselves."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _PROCESSING_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_path(name: str, options: dict) -> Path:
    tag = "-".join(str(options[k]) for k in sorted(options))
    return data_dir() / "cache" / f"{name}-{tag}.json"


def load_cached(path: Path, fingerprint_: str) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    valid = (
        isinstance(doc, dict)
        and doc.get("format") == CACHE_FORMAT
        and doc.get("fingerprint") == fingerprint_
        and doc.get("code") == code_digest()
    )
    return doc if valid else None


def save_cached(path: Path, doc: dict) -> None:
    """Atomic (temp file + os.replace): concurrent loaders never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "code": code_digest(), **doc}, ensure_ascii=False))
    os.replace(tmp, path)
