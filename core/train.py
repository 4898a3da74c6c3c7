"""`python -m core.train`: train the poetry LSTM headless (a server, a batch job, or the workbench's child).

Every event goes to <run>/metrics.jsonl. On a terminal, a rich progress bar and one log row per evaluation;
otherwise plain log rows on stderr; with `--events jsonl`, the events as JSON lines on stdout (the workbench
reads these). Ctrl-C or SIGTERM saves a final checkpoint, then exits 130 or 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from core.cli import ArgumentParser, run
from core.options import add_flags, given
from core.training.events import Output
from core.training.settings import PRESETS, RESUME_OVERRIDABLE, StopRequested, TrainConfig, default_run_name

EXIT_FOR = {"interrupted": 130, "terminated": 143}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named configuration; flags override it")
    parser.add_argument(
        "--run-dir", type=Path, help="folder of this run (default: <checkpoints>/<time>-<corpus>-<opt>)"
    )
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of all runs")
    parser.add_argument(
        "--resume", type=Path, help="continue the run of this checkpoint exactly where it stopped"
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="start a new run from this checkpoint's weights (not its optimizer), e.g. on --corpus FILE: the "
        "model is the checkpoint's, its vocabulary extended by the new corpus's characters",
    )
    parser.add_argument("--events", choices=["jsonl"], help="print every event as a JSON line on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_flags(parser, TrainConfig, defaults=False)  # each flag parsed and range-checked as it is read
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """(TrainConfig defaults <- preset <- the flags given, the flags given): resume honours some of them."""
    flags = given(args, TrainConfig)
    cfg = TrainConfig.from_dict({**(PRESETS[args.preset] if args.preset else {}), **flags})
    return cfg, flags


def fine_tune_config(args: argparse.Namespace, flags: dict) -> TrainConfig:
    """--init-from: the checkpoint's model and training settings, a fine-tuning schedule, the preset's
    training settings, the flags (core.training.finetune); refused with --resume or a contradicting flag."""
    from core.errors import PoemError
    from core.runs.checkpoint import read_meta
    from core.runs.folder import resolve_checkpoint
    from core.training.finetune import fine_tune_config as merge

    if args.resume:
        raise PoemError("--init-from starts a new run and --resume continues one: give one of them")
    args.init_from = resolve_checkpoint(args.init_from)
    return merge(read_meta(args.init_from), flags, PRESETS[args.preset] if args.preset else None)


def main(argv: list[str] | None = None) -> int:
    stop = StopRequested()

    def on_signal(signum, _frame):
        stop.set("interrupted" if signum == signal.SIGINT else "terminated")
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    # First thing, before torch loads: a Stop that arrives during start-up is honoured, not a traceback.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    args = build_parser().parse_args(argv)
    cfg, flags = config_from_args(args)
    if args.init_from:
        cfg = fine_tune_config(args, flags)
    if not args.resume:
        cfg.check()
    run_dir = args.run_dir or (
        Path(args.resume).parent if args.resume else args.checkpoints / default_run_name(cfg)
    )

    from core.training import distributed as dist
    from core.training import memory
    from core.training.trainer import Trainer

    if args.resume:  # bad input fails in these constructors, before any output is opened
        overrides = {k: v for k, v in flags.items() if k in RESUME_OVERRIDABLE}
        for name in sorted(set(flags) - RESUME_OVERRIDABLE):
            sys.stderr.write(
                f"warning: {TrainConfig.specs()[name].flag} is fixed by the checkpoint; ignored\n"
            )
        trainer = Trainer.resume(args.resume, run_dir, overrides=overrides, stop=stop)
    elif args.init_from:
        trainer = Trainer.init_from(args.init_from, cfg, run_dir, stop=stop)
        o = trainer.origin or {}
        sys.stderr.write(
            f"fine-tuning {args.init_from} on {cfg.corpus}: |V| {o.get('vocab_size')} + "
            f"{o.get('new_characters')} new characters\n"
        )
    else:
        trainer = Trainer.new(cfg, run_dir, stop=stop)
    memory.keep_freed_memory()  # each step reuses the last one's memory (core/training/memory.py)
    output = None
    if dist.is_main():  # under torchrun, rank 0 alone writes events and logs
        if args.resume:
            trainer.folder.trim_events(trainer.progress.step)
        output = Output(Path(run_dir), args.events == "jsonl", args.quiet)
        trainer.on_event = output
    try:
        summary = trainer.run()
    finally:
        if output is not None:
            output.close()
        dist.teardown()
    return EXIT_FOR.get(summary["status"], 0)


if __name__ == "__main__":
    run(main)
