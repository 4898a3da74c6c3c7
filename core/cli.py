"""What every `python -m core.<command>` shares: argument parsing that fails in one line, and exit statuses.

Exit 0 on success, 2 on a user mistake (one line on stderr, no traceback), 1 on anything else,
130 on Ctrl-C. `--json` commands print exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from core.errors import PoemError
from core.runs.versions import require_torch

EXIT_USER = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (usage stays available through --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see --help)\n")


def finite(obj: Any) -> Any:
    """obj with every NaN or infinite float, however deeply nested, made None: JSON has neither (Python's
    json writes bare NaN and Infinity, which JSON parsers refuse)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def json_line(obj: Any, *, ascii_only: bool = False) -> str:
    """One JSON text for obj: non-finite floats as null (`finite`), anything else json cannot write as its
    str(); allow_nan=False guards the rule."""
    return json.dumps(finite(obj), ensure_ascii=ascii_only, allow_nan=False, default=str)


def print_json(obj: Any) -> None:
    """The one JSON object a `--json` command prints on stdout (standard JSON: no NaN, no Infinity)."""
    try:
        sys.stdout.write(json_line(obj) + "\n")
    except UnicodeEncodeError:  # text that was not UTF-8 (a lone surrogate) or a stdout that is not UTF-8
        sys.stdout.write(json_line(obj, ascii_only=True) + "\n")
    sys.stdout.flush()


def fail(message: str, status: int = EXIT_USER) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def run(
    main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, needs_torch: bool = True
) -> NoReturn:
    """Run a command's main and turn its outcome into an exit status."""
    try:
        if needs_torch:
            require_torch()
        status = main(argv)
    except PoemError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except BrokenPipeError:
        # `... | head`: the reader left; nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except SystemExit:
        raise
    except Exception as exc:  # a bug: keep the traceback, it is what a developer needs
        traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc}", status=1)
    raise SystemExit(status or 0)
