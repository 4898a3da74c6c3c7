"""Atomic writes: readers only ever see the old file or the complete new one.

A write goes to a temporary file in the same folder, is fsynced, renamed over the target with os.replace,
and the folder is fsynced: a process killed at any moment leaves either the old file or the new one. A
killed process cannot remove its own temporary file; `clean_stale_temps` removes those of processes that no
longer exist. Temporary names start with `.tmp-<pid>-` and end in `.part`, so no listing mistakes one for
a checkpoint or a log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from core.errors import CheckpointError

TMP_PREFIX = ".tmp-"  # temporary files start with this; listings skip them
TMP_SUFFIX = ".part"  # ... and end with this, so that a `*.safetensors` glob never matches one


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (some filesystems cannot fsync a folder: then there is nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A fresh temporary name next to `path`: .tmp-<pid>-<random>-<name>.part (the pid lets a later run
    tell a dead writer's leftover from a write in progress)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}{TMP_SUFFIX}")


def is_temp(path: Path) -> bool:
    return Path(path).name.startswith(TMP_PREFIX)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers only ever see the old file or the complete new one."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, or Ctrl-C with the default handler: no temp file left
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):  # what was there before is untouched; the caller says what that is
            raise CheckpointError(f"could not write {path}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(path.parent)


def atomic_link(src: Path, dst: Path) -> None:
    """Make `dst` a complete copy of `src` atomically (a hard link when the filesystem allows it)."""
    src, dst = Path(src), Path(dst)
    tmp = temp_path(dst)
    try:
        os.link(src, tmp)
    except OSError:
        try:
            data = src.read_bytes()  # no hard links here (or src vanished): copy
        except OSError as exc:
            raise CheckpointError(f"could not update {dst}: {exc.strerror or exc}") from exc
        atomic_write_bytes(dst, data)
        return
    try:
        os.replace(tmp, dst)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not update {dst}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(dst.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove temporary files left by writers that were killed (their pid no longer exists).

    Temporary files of live processes are writes in progress and are left alone. Returns what was removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(Path(folder) / name)
                removed.append(Path(folder) / name)
            except OSError:
                pass
    return removed
