"""Paths a user names: every file we read through `open_input` / `read_input`, every folder we write into
through `prepare_folder`. Each fault is one line that names the path (a PoemError), never a traceback, a
hang or an exhausted memory:

- a FIFO, a device (/dev/zero), a socket or a folder where a file is wanted: refused before a byte is read
  (opened with O_NONBLOCK, so a FIFO without a writer cannot block; then fstat says what it is);
- a symlink loop, a missing file, a path through a file, no permission, a name too long: one line each;
- a file larger than the caller's limit: refused from its size, before it is read.

Standard library only: `core.corpus` (which must not load torch) and `core.gelv` read through it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from core.errors import PoemError

# Largest input file read whole (a user corpus, a poems file): POEMTUI_MAX_INPUT_BYTES overrides it.
MAX_INPUT_BYTES = 1 << 30

_WHY = {
    errno.ENOENT: "missing (no such file)",
    errno.ELOOP: "a symlink loop (too many levels of symbolic links)",
    errno.ENOTDIR: "a path through something that is not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "name too long",
    errno.EROFS: "on a read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EEXIST: "exists and is not a folder",
}


def why(exc: OSError) -> str:
    """An OSError as a few words (errno first: the same fault reads the same wherever it happens)."""
    return _WHY.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "an unusual file"


def max_input_bytes() -> int:
    text = os.environ.get("POEMTUI_MAX_INPUT_BYTES", "")
    return int(text) if text.isdigit() else MAX_INPUT_BYTES


def open_input(path: str | os.PathLike, what: str = "file", error: type[PoemError] = PoemError) -> BinaryIO:
    """Open a user-named file for reading, or raise `error` in one line: it must be a regular file (a
    symlink to one is fine). Nothing is read; a FIFO never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{path}: {why(exc)}") from None
    except ValueError:  # an embedded NUL byte
        raise error(f"{path!r}: not a valid path") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {kind_of(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_input(
    path: str | os.PathLike,
    what: str = "file",
    error: type[PoemError] = PoemError,
    limit: int | None = None,
) -> bytes:
    """The whole of a user-named regular file (see open_input), refused from its size when over `limit`
    (default: max_input_bytes())."""
    limit = max_input_bytes() if limit is None else limit
    with open_input(path, what, error) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise error(
                f"{path}: {size / 2**20:,.0f} MiB, over the {limit / 2**20:,.0f} MiB a {what} may have "
                "(POEMTUI_MAX_INPUT_BYTES raises it)"
            )
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read ({why(exc)})") from None
    if len(data) > limit:
        raise error(f"{path}: grew past {limit / 2**20:,.0f} MiB while it was read")
    return data


def prepare_folder(path: str | os.PathLike, flag: str) -> Path:
    """Make `path` (and its parents) a folder we can write into, or raise PoemError in one line naming the
    flag: an existing file, a path through a file, no permission, a read-only or virtual file system."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PoemError(f"{flag} {path}: exists and is not a folder") from None
    except OSError as exc:
        reason = "a file system where nothing can be created" if exc.errno == errno.ENOENT else why(exc)
        raise PoemError(f"{flag} {path}: cannot create it ({reason})") from None
    except ValueError:
        raise PoemError(f"{flag} {path!r}: not a valid path") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PoemError(f"{flag} {path}: not writable (permission denied)")
    return path
