"""`poemtui` and `python -m poemtui`: open the workbench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="poemtui", description="Train, watch and write with a Tang-poetry LSTM."
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path("checkpoints"),
        help="folder of training runs (default: ./checkpoints)",
    )
    parser.add_argument("--no-welcome", action="store_true", help="skip the first-run welcome dialog")
    args = parser.parse_args(argv)
    if args.checkpoints.exists() and not args.checkpoints.is_dir():
        parser.error(f"--checkpoints {args.checkpoints}: not a folder")
    from core.cli import fail
    from core.errors import PoemError
    from core.runs.versions import require_torch

    try:
        require_torch()  # before torch is imported: an old one must not even load a checkpoint
    except PoemError as exc:
        fail(str(exc))
    if sys.stderr.isatty():
        sys.stderr.write("poemtui: loading torch…\r")
        sys.stderr.flush()
    from poemtui.app import PoemApp

    PoemApp(checkpoints_dir=args.checkpoints, welcome=not args.no_welcome).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
