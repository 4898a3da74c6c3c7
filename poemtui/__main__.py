"""`poemtui` and `python -m poemtui`: open the workbench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poemtui", description="Train, watch and write with a Tang-poetry LSTM.")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"),
                        help="folder of training runs (default: ./checkpoints)")
    args = parser.parse_args(argv)
    from poemtui.app import PoemApp

    PoemApp(checkpoints_dir=args.checkpoints).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
