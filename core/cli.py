"""What every `python -m core.<command>` shares: argument parsing that fails in one line, and exit statuses.

Exit 0 on success, 2 on a user mistake (one line on stderr, no traceback), 1 on anything else,
130 on Ctrl-C. `--json` commands print exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
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


def print_json(obj: Any) -> None:
    """The one JSON object a `--json` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
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
