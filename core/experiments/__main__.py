"""`python -m core.experiments optimizers|lr-sweep|init|ablation|architectures`: the report's experiments.

  optimizers     the same model, seed and data order trained with each optimizer for the same budget
  lr-sweep       short runs per (optimizer, learning rate); the best lr per optimizer
  init           zero initialisation against random schemes: hidden-unit symmetry, loss plateau
  ablation       the 全唐诗 preset, and the preset without each of its parts, on one budget
  architectures  the plain LSTM, the preset and a character Transformer on one time budget

Results go to docs/results/ (--out): <experiment>-<corpus>.json (every number), .md (tables), .png
(matplotlib, if installed). Training runs live in <checkpoints>/experiments/<experiment>-<corpus>/<run>/,
ordinary run folders the workbench can open. Running a command again skips finished runs and resumes
interrupted ones; --fresh starts them again. Training flags not listed here (e.g. --hidden-size 128,
--device cuda, --lr-patience 2 for the plateau schedule instead of a constant lr) are passed on to every
`python -m core.train`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.errors import PoemError
from core.experiments.commands import Progress, cmd_init, cmd_models, cmd_optimizers, cmd_sweep
from core.experiments.runs import parse_extra_flags
from core.experiments.symmetry import SCHEMES, InitSettings
from core.training.backends import OPTIMIZERS


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None

    return parse


def _lr_pairs(text: str) -> dict[str, float]:
    pairs = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            pairs[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected OPTIMIZER=LR[,...], got {text!r}") from None
    return pairs


def _common(p: ArgumentParser) -> None:
    p.add_argument(
        "--corpus", default="tang300", help="tang300, quantangshi or a user corpus (default tang300)"
    )
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of all runs")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="where tables and plots go")
    p.add_argument("--seed", type=int, default=2019, help="the seed every run shares (default 2019)")
    p.add_argument("--fresh", action="store_true", help="delete this experiment's runs and start again")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress or terminal plot on stderr")


def _training(p: ArgumentParser) -> None:
    p.add_argument("--preset", help="model preset (default: the corpus's own, e.g. tang300)")
    p.add_argument("--budget-steps", type=int, help="optimizer steps per run (deterministic; recommended)")
    p.add_argument("--budget-minutes", type=float, help="wall-clock minutes per run")
    p.add_argument(
        "--eval-every",
        type=int,
        help="steps between evaluations besides epoch ends (default: none when the budget spans ≥ 10 "
        "epochs, else budget/20, at least 5)",
    )
    p.add_argument("--patience", type=int, default=0, help="early-stopping patience (default 0: none)")
    p.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS for each run (1 is fastest on a busy machine)"
    )
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1; use --threads 1)")
    p.add_argument("--dry-run", action="store_true", help="print the core.train commands, run nothing")
    p.add_argument(
        "--extend",
        type=int,
        default=2,
        help="sweep: extend the grid this many times while the best lr is at one of its ends (default 2)",
    )


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m core.experiments",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    o = sub.add_parser("optimizers", help="compare the optimizers on one budget", allow_abbrev=False)
    _common(o)
    _training(o)
    o.add_argument("--optimizers", type=_csv(str), default=list(OPTIMIZERS), help="comma-separated")
    o.add_argument(
        "--lr", type=_lr_pairs, default={}, help="learning rates, e.g. adam=3e-3,sgd=1 (override the sweep)"
    )
    o.add_argument("--sweep", action="store_true", help="first choose each lr by the sweep (resumable)")
    o.add_argument("--sweep-steps", type=int, help="steps per sweep run (default: a quarter of the budget)")
    o.add_argument("--sweep-minutes", type=float, help="minutes per sweep run")

    s = sub.add_parser(
        "lr-sweep", help="short runs per (optimizer, lr); the best lr each", allow_abbrev=False
    )
    _common(s)
    _training(s)
    s.add_argument("--optimizer", "--optimizers", dest="optimizers", type=_csv(str), default=list(OPTIMIZERS))
    s.add_argument("--lrs", type=_csv(float), help="learning rates to try (default: LR_GRID per optimizer)")

    i = sub.add_parser("init", help="zero initialisation against random schemes", allow_abbrev=False)
    _common(i)
    d = InitSettings()
    i.add_argument("--schemes", type=_csv(str), default=list(SCHEMES), help="comma-separated init schemes")
    i.add_argument(
        "--steps", type=int, default=d.steps, help=f"training steps per scheme (default {d.steps})"
    )
    i.add_argument("--embed-size", type=int, default=d.embed_size)
    i.add_argument("--hidden-size", type=int, default=d.hidden_size)
    i.add_argument("--num-layers", type=int, default=d.num_layers)
    i.add_argument("--batch-size", type=int, default=d.batch_size)
    i.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    i.add_argument("--lr", type=float, default=d.lr)
    i.add_argument(
        "--dropout", type=float, default=d.dropout, help="default 0: only the init breaks symmetry"
    )
    i.add_argument("--device", default=d.device)
    i.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the model is small)")
    for name, text in (
        ("ablation", "the preset without each of its parts, one budget (default 10 minutes each)"),
        ("architectures", "plain LSTM, the preset, a Transformer: one time budget (default 30 minutes)"),
    ):
        a = sub.add_parser(name, help=text, allow_abbrev=False)
        _common(a)
        _training(a)
        a.set_defaults(corpus="quantangshi")
        a.add_argument(
            "--poems", type=int, default=500, help="pure samples per run for the rhyme rate (default 500)"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.command_line = "python -m core.experiments " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command == "init" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    progress = Progress(args.quiet)
    if args.command == "init":
        result = cmd_init(args, progress)
    else:
        extra = parse_extra_flags(rest)
        if args.jobs <= 0:
            raise PoemError("--jobs: must be > 0")
        if args.threads is not None:
            if args.threads <= 0:
                raise PoemError("--threads: must be > 0")
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        commands = {"optimizers": cmd_optimizers, "lr-sweep": cmd_sweep}
        result = commands.get(args.command, cmd_models)(args, extra, progress)
    if args.json and result:
        print_json(result)
    return 0


def _terminate(_signum, _frame):
    raise KeyboardInterrupt  # like Ctrl-C: the running child saves a checkpoint; the next call resumes it


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    run(main)
