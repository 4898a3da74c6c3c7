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
import dataclasses
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
from core.options import add_option, add_spec, device_problem
from core.training.backends import OPTIMIZERS
from core.training.settings import TrainConfig

LR = TrainConfig.specs()["lr"]


def _csv(kind):
    def parse(text: str):
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        for value in values:  # a learning rate is checked as --lr is (finite, > 0)
            if kind is float and (problem := LR.problem(value)):
                raise argparse.ArgumentTypeError(f"{value:g}: {problem}")
        return values

    return parse


def _lr_pairs(text: str) -> dict[str, float]:
    pairs = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            pairs[name.strip()] = LR.parse(value)
        except (ValueError, PoemError) as exc:
            raise argparse.ArgumentTypeError(f"expected OPTIMIZER=LR[,...], got {text!r} ({exc})") from None
    return pairs


def _like(p: ArgumentParser, name: str, default, help: str | None = None) -> None:
    """A flag declared as TrainConfig's setting of that name (its kind and range), with its own default."""
    spec = TrainConfig.specs()[name]
    add_spec(p, dataclasses.replace(spec, default=default, help=help or spec.help, optional=default is None))


def _common(p: ArgumentParser) -> None:
    p.add_argument(
        "--corpus", default="tang300", help="tang300, quantangshi or a user corpus (default tang300)"
    )
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of all runs")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="where tables and plots go")
    _like(p, "seed", 2019, "the seed every run shares")
    p.add_argument("--fresh", action="store_true", help="delete this experiment's runs and start again")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress or terminal plot on stderr")


def _training(p: ArgumentParser) -> None:
    p.add_argument("--preset", help="model preset (default: the corpus's own, e.g. tang300)")
    add_option(
        p, "budget_steps", int, None, "optimizer steps per run (deterministic; recommended)", low=1,
        high=10**9, none="none",
    )  # fmt: skip
    add_option(
        p, "budget_minutes", float, None, "wall-clock minutes per run", low=0, low_open=True, high=10**6,
        none="none",
    )  # fmt: skip
    _like(
        p, "eval_every", None, "steps between evaluations besides epoch ends (default: none when the budget "
        "spans ≥ 10 epochs, else budget/20, at least 5)",
    )  # fmt: skip
    _like(p, "patience", 0, "early-stopping patience (0: none)")
    add_option(
        p, "threads", int, None, "OMP_NUM_THREADS for each run (1 is fastest on a busy machine)", low=1,
        high=1024, none="torch's choice",
    )  # fmt: skip
    add_option(p, "jobs", int, 1, "runs trained at once (use --threads 1)", low=1, high=256)
    p.add_argument("--dry-run", action="store_true", help="print the core.train commands, run nothing")
    add_option(
        p, "extend", int, 2, "sweep: extend the grid this many times while the best lr is at one of its ends",
        low=0, high=100,
    )  # fmt: skip


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
    add_option(
        o, "sweep_steps", int, None, "steps per sweep run", low=1, high=10**9, none="a quarter of the budget"
    )
    add_option(o, "sweep_minutes", float, None, "minutes per sweep run", low=0, low_open=True, high=10**6)

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
    add_option(i, "steps", int, d.steps, "training steps per scheme", low=1, high=10**7)
    for name in ("embed_size", "hidden_size", "num_layers", "batch_size", "optimizer", "lr"):
        _like(i, name, getattr(d, name))
    _like(i, "dropout", d.dropout, "dropout (0: only the init breaks symmetry)")
    add_option(i, "device", str, d.device, "cpu or cuda (cuda:N)", test=device_problem)
    add_option(i, "threads", int, 1, "torch threads (1: the model is small)", low=1, high=1024)
    for name, text in (
        ("ablation", "the preset without each of its parts, one budget (default 10 minutes each)"),
        ("architectures", "plain LSTM, the preset, a Transformer: one time budget (default 30 minutes)"),
    ):
        a = sub.add_parser(name, help=text, allow_abbrev=False)
        _common(a)
        _training(a)
        a.set_defaults(corpus="quantangshi")
        add_option(a, "poems", int, 500, "pure samples per run for the rhyme rate", low=10, high=100_000)
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
        if args.threads is not None:
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
