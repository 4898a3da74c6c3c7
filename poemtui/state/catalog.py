"""The checkpoints folder as the browser shows it: one entry per checkpoint, readable or not (and why not).

A run is any folder under the root that holds checkpoints, however deep (an experiment's runs live in
`experiments/<experiment>/<run>/`), named by its path from the root. Only headers are read
(`core.runs.checkpoint.read_meta`), and only once per file version, so hundreds of runs list quickly. `best`
and `last` are hard links (or copies) of a `rnn_*` file of the same run: they become tags of that file's
entry instead of rows of their own. Files whose names start with `.tmp-` are writes in progress and are
never listed; hidden and temporary folders are never entered.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.runs.atomic import TMP_PREFIX
from core.runs.checkpoint import EXT, read_meta

# Other extensions a user may drop in the folder: listed (as unreadable, with the reason) rather than hidden.
CHECKPOINT_SUFFIXES = (EXT, ".pt", ".pth", ".ckpt", ".bin", ".pkl")
POINTER_NAMES = ("best", "last")


@dataclass
class CheckpointEntry:
    path: Path
    run: str
    size: int
    mtime: float
    meta: dict | None = None
    error: str | None = None
    tags: list[str] = field(default_factory=list)  # "best", "last" when those names point here

    @property
    def readable(self) -> bool:
        return self.meta is not None

    def section(self, key: str) -> dict:
        value = (self.meta or {}).get(key)
        return value if isinstance(value, dict) else {}

    @property
    def progress(self) -> dict:
        return self.section("progress")

    @property
    def train(self) -> dict:
        return self.section("train")

    @property
    def model(self) -> dict:
        return self.section("model")

    @property
    def epoch(self) -> int | None:
        """1-based epoch of the file's name (`rnn_<epoch>_<batch>_...`), else of its progress."""
        parts = _name_parts(self.path.name)
        if parts:
            return parts[0]
        p = self.progress
        return p.get("epoch") if isinstance(p.get("epoch"), int) else None

    @property
    def batch(self) -> int | None:
        parts = _name_parts(self.path.name)
        if parts:
            return parts[1]
        p = self.progress
        return p.get("batch") if isinstance(p.get("batch"), int) else None

    @property
    def dev_ppl(self) -> float | None:
        value = self.progress.get("dev_ppl")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    @property
    def optimizer(self) -> str:
        return str(self.section("optimizer").get("name") or self.train.get("optimizer") or "?")

    @property
    def corpus(self) -> str:
        name = str(self.section("corpus").get("name") or "?")
        return Path(name).name if os.sep in name else name

    @property
    def vocab_size(self) -> int | None:
        value = self.model.get("vocab_size")
        return value if isinstance(value, int) else None

    @property
    def label(self) -> str:
        return f"{self.run}/{self.path.name}" if self.run else self.path.name

    def sort_key_ppl(self) -> tuple:
        return (not self.readable, self.dev_ppl is None, self.dev_ppl or 0.0, -self.mtime)


def _name_parts(name: str) -> tuple[int, int] | None:
    parts = name.split("_")
    if len(parts) >= 5 and parts[0] == "rnn" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


# path -> ((inode, mtime, size), meta, error): a rescan reads again only the files that changed.
_read_before: dict[Path, tuple[tuple[int, int, int], dict | None, str | None]] = {}


def read_entry(path: Path, run: str) -> CheckpointEntry:
    try:
        st = path.stat()
    except OSError as exc:
        return CheckpointEntry(path, run, 0, 0.0, error=f"cannot read: {exc.strerror or exc}")
    entry = CheckpointEntry(path, run, st.st_size, st.st_mtime)
    if path.suffix != EXT:
        entry.error = (
            f"not a poemtui checkpoint (poemtui writes {EXT} files; {path.suffix} files are never loaded)"
        )
        return entry
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    known = _read_before.get(path)
    if known is not None and known[0] == stamp:
        entry.meta, entry.error = known[1], known[2]
        return entry
    try:
        entry.meta = read_meta(path)  # header only; a file cut short after its header is refused too
    except Exception as exc:  # CheckpointError, and anything a hostile header might still provoke
        entry.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if entry.error:
        entry.meta = None
    _read_before[path] = (stamp, entry.meta, entry.error)
    return entry


def read_run(files: list[Path], run: str) -> list[CheckpointEntry]:
    """A run folder's checkpoints, with best/last as tags of the file they point to.

    Pointers are hard links (same inode: not even read) or, where links are impossible, copies (same step)."""
    pointers = {p.stem: p for p in files if p.stem in POINTER_NAMES}
    kept = [read_entry(p, run) for p in files if p.stem not in POINTER_NAMES]
    for name in POINTER_NAMES:
        path = pointers.get(name)
        if path is None:
            continue
        target = next((e for e in kept if _same_inode(e.path, path)), None)
        if target is None:
            pointer = read_entry(path, run)
            target = next((e for e in kept if _same_step(e, pointer)), None)
            if target is None:
                pointer.tags.append(name)
                kept.append(pointer)
                continue
        target.tags.append(name)
    return kept


def _same_inode(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _same_step(a: CheckpointEntry, b: CheckpointEntry) -> bool:
    if not (a.readable and b.readable) or a.size != b.size:
        return False
    pa, pb = a.progress, b.progress
    return (pa.get("step"), pa.get("epoch"), pa.get("batch")) == (
        pb.get("step"),
        pb.get("epoch"),
        pb.get("batch"),
    )


MAX_DEPTH = 8  # run folders nest (experiments/<experiment>/<run>/); deeper than this is not a run folder
SKIPPED_DIRS = ("__pycache__", "node_modules")


def _skipped(name: str) -> bool:
    """Hidden folders (and `.tmp-` writes in progress), temporary ones and caches are never entered."""
    return name.startswith((".", "~")) or name.endswith((".tmp", ".part")) or name in SKIPPED_DIRS


def run_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """(run name, its checkpoint files) for the root and every folder under it that holds checkpoints.

    A run's name is its path relative to the root (`experiments/optimizers-tang300/adam`; "" for files in
    the root itself). One `scandir` per folder, no file opened; a folder seen twice (a link) counts once."""
    found: list[tuple[str, list[Path]]] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, name: str, depth: int) -> None:
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        files = [Path(e.path) for e in items if _is_candidate_entry(e)]
        if files:
            found.append((name, files))
        if depth >= MAX_DEPTH:
            return
        for e in items:
            if not _skipped(e.name) and _is_dir(e):
                visit(Path(e.path), f"{name}/{e.name}" if name else e.name, depth + 1)

    visit(Path(root), "", 0)
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_candidate_entry(entry: os.DirEntry) -> bool:
    if entry.name.startswith(TMP_PREFIX) or not entry.name.endswith(CHECKPOINT_SUFFIXES):
        return False
    try:
        return entry.is_file()
    except OSError:
        return False


def has_checkpoints(root: Path) -> bool:
    """Is there any checkpoint file at all (readable or not)? No file is opened."""
    return Path(root).is_dir() and bool(run_folders(root))


def scan(root: Path) -> list[CheckpointEntry]:
    """Every checkpoint under root: files in root itself and in each run folder, however deep."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries: list[CheckpointEntry] = []
    for run, files in run_folders(root):
        entries.extend(read_run(files, run) if run else [read_entry(p, run) for p in files])
    for path in set(_read_before) - {e.path for e in entries}:
        _read_before.pop(path, None)  # gone from disk (or from this tree): forget it
    return entries


def sort_entries(entries: list[CheckpointEntry], by: str) -> list[CheckpointEntry]:
    if by == "date":
        return sorted(entries, key=lambda e: (-e.mtime, e.label))
    return sorted(entries, key=lambda e: (*e.sort_key_ppl(), e.label))


def best_entry(entries: list[CheckpointEntry]) -> CheckpointEntry | None:
    """The readable checkpoint with the lowest dev perplexity (a sensible one to write poems with)."""
    good = [e for e in entries if e.readable and e.dev_ppl is not None]
    return min(good, key=lambda e: (e.dev_ppl, -e.mtime)) if good else None


def delete_entry(entry: CheckpointEntry) -> list[Path]:
    """Delete the file and the best/last names that point to it; returns what was removed."""
    pointers = [entry.path.with_name(f"{tag}{EXT}") for tag in entry.tags]
    targets = [entry.path] + [
        p for p in pointers if p != entry.path and p.exists() and _links_to(p, entry.path)
    ]
    for path in targets:
        path.unlink(missing_ok=True)
    return targets


def _links_to(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or a.stat().st_size == b.stat().st_size
    except OSError:
        return False


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_date(ts: float) -> str:
    return time.strftime("%y-%m-%d %H:%M", time.localtime(ts)) if ts else "?"
