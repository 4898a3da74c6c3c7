"""A run folder: the one place that knows how a training run lays out its files.

    checkpoints/<run>/
        rnn_<epoch>_<batch>_<dev-ppl>_<optimizer>.safetensors    one per save (the report's naming)
        best.safetensors, last.safetensors                       hard links (or copies) of two of them
        metrics.jsonl                                            every event, one JSON object a line
        .lock                                                    held (flock) by the run's one writer

The trainer writes through it, `core.evaluate` and `core.generate` resolve a folder to its best
checkpoint through it, and the workbench lists runs with it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

from core.errors import PoemError
from core.paths import why
from core.runs.atomic import atomic_link, is_temp
from core.runs.checkpoint import EXT
from core.runs.metrics import read_events, trim_metrics

BEST, LAST = "best", "last"
POINTERS = (BEST, LAST)
METRICS = "metrics.jsonl"
LOCK = ".lock"
MAX_PPL_IN_NAME = 1e6  # above this (a diverged run) the name says "inf": names stay short
_NAME = re.compile(r"^rnn_(\d+)_(\d+)_([0-9.]+|inf|nan)_([A-Za-z0-9]+)" + re.escape(EXT) + "$")


@dataclass(frozen=True)
class CheckpointName:
    """What a checkpoint's file name says: where in training it was saved, its dev perplexity, optimizer."""

    epoch: int
    batch: int
    dev_ppl: float
    optimizer: str

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.batch

    def __str__(self) -> str:
        ppl = self.dev_ppl
        text = f"{ppl:.2f}" if math.isfinite(ppl) and ppl < MAX_PPL_IN_NAME else "inf"
        text = "nan" if math.isnan(ppl) else text
        return f"rnn_{self.epoch}_{self.batch}_{text}_{self.optimizer}{EXT}"

    @classmethod
    def parse(cls, name: str) -> CheckpointName | None:
        m = _NAME.match(name)
        if m is None:
            return None
        return cls(int(m[1]), int(m[2]), float(m[3]), m[4])


def checkpoint_name(epoch: int, batch: int, dev_ppl: float, optimizer: str) -> str:
    return str(CheckpointName(epoch, batch, dev_ppl, optimizer))


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint files of a folder (temporary files never), oldest first."""
    try:
        paths = [p for p in Path(folder).iterdir() if p.suffix == EXT and not is_temp(p) and p.is_file()]
    except OSError:
        return []

    def mtime(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:
            return 0

    return sorted(paths, key=lambda p: (mtime(p), p.name))


def resolve_checkpoint(path: Path) -> Path:
    """A run folder stands for its best checkpoint (or, before any best, its last one)."""
    path = Path(path)
    if os.path.isdir(path):  # False, not an OSError, for a name too long or a path through a file
        for name in POINTERS:
            if (path / f"{name}{EXT}").exists():
                return path / f"{name}{EXT}"
    return path


class RunFolder:
    """One run's folder, as its writer (the trainer) and its readers see it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock: int | None = None  # the file descriptor holding the flock, while we are the writer
        self._finalizer = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- one writer ----------------------------------------------------------------------------------

    def holds_run(self) -> str:
        """What makes this folder a run's ("metrics.jsonl, 3 checkpoints"), or "" when nothing does."""
        found = []
        try:
            if os.path.isfile(self.metrics_path) and self.metrics_path.stat().st_size > 0:
                found.append(METRICS)
        except OSError:
            pass
        n = len(self.checkpoints()) or len(list_checkpoints(self.path))
        if n:
            found.append(f"{n} checkpoint{'s' if n > 1 else ''}")
        return ", ".join(found)

    def claim(self, flag: str = "--run-dir") -> None:
        """Become the folder's one writer: an exclusive flock on <run>/.lock, held until release() or the
        process's end (the kernel drops it when the process dies, however it dies: no stale lock). A
        folder another process writes to is refused in one line naming that process."""
        if self._lock is not None:
            return
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PoemError(f"{flag} {self.path}: cannot write there ({why(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"another training (pid {holder})" if holder else "another training"
            raise PoemError(
                f"{flag} {self.path} is in use: {who} writes to it; wait for it to end, or choose another "
                f"{flag}"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise PoemError(f"{flag} {self.path}: cannot lock {LOCK} ({why(exc)})") from None
            # a file system without locks (some network mounts): one writer is then up to the user
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd
        self._finalizer = weakref.finalize(self, _close_quietly, fd)

    def release(self) -> None:
        """Stop being the writer (the lock goes; the file stays, empty of meaning)."""
        if self._finalizer is not None:
            self._finalizer()  # closes the descriptor: the flock goes with it
        self._lock = self._finalizer = None

    @property
    def claimed(self) -> bool:
        return self._lock is not None

    def check_held(self) -> None:
        """Before a write: is the folder still the one claimed? Removed while the run trained, its path may
        hold nothing, or a new folder that another training has claimed (the old lock is on the removed
        .lock, so nothing stops it): saving, pointing best/last and pruning there would overwrite and delete
        that run's files. A writer that finds its folder gone stops, saying so."""
        if self._lock is None:
            return
        try:
            held, now = os.fstat(self._lock), os.stat(self.path / LOCK)
            same = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
        except OSError:
            same = False
        if not same:
            raise PoemError(
                f"{self.path} was removed or replaced while this run wrote to it: nothing more is written "
                "there (its checkpoints went with the folder)"
            )

    # --- checkpoints and pointers --------------------------------------------------------------------

    def pointer(self, name: str) -> Path:
        """best.safetensors or last.safetensors (which may not exist yet)."""
        return self.path / f"{name}{EXT}"

    def checkpoints(self) -> list[Path]:
        """The rnn_* files, in training order (by the epoch and batch their names carry)."""
        named = [(n, p) for p in list_checkpoints(self.path) if (n := CheckpointName.parse(p.name))]
        return [p for _, p in sorted(named, key=lambda np: np[0].position)]

    def point(self, name: str, target: Path) -> None:
        """Make best or last a complete copy of target, atomically (a hard link where possible)."""
        atomic_link(target, self.pointer(name))

    def retain(self, keep: int, protect: set[str]) -> list[Path]:
        """Delete all but the newest `keep` checkpoints and those named in `protect`; returns the deleted."""
        if keep <= 0:
            return []
        files = self.checkpoints()
        kept = protect | {f.name for f in files[-keep:]}
        gone = [f for f in files if f.name not in kept]
        for f in gone:
            f.unlink(missing_ok=True)
        return gone

    # --- the metrics log -----------------------------------------------------------------------------

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def events(self) -> list[dict]:
        return read_events(self.path)

    def trim_events(self, step: int) -> None:
        """Forget the events after `step` (a resume from a checkpoint at `step` logs them again)."""
        trim_metrics(self.metrics_path, step)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
