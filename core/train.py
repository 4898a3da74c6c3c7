"""`python -m core.train`: train the poetry LSTM headless (a server, a batch job, or the workbench's child).

Every event goes to <run>/metrics.jsonl. On a terminal, a rich progress bar and one log row per evaluation;
otherwise plain log rows on stderr; with `--events jsonl`, the events as JSON lines on stdout (the workbench
reads these).

Stopping loses nothing: Ctrl-C, SIGTERM or SIGHUP asks the run to stop; it finishes its batch, evaluates,
saves a checkpoint and exits 130, 143 or 129. The same signal again while that happens says so and waits;
a third aborts at once without the final checkpoint (saying so; the earlier checkpoints stay). A reader of
the events that goes away (the workbench dies, `| head`) stops the run the same way: saved, exit 141.
A run folder has one writer (a lock); a new run never adopts a folder holding another run: `--resume` is
the way to continue one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from core.cli import ArgumentParser, run
from core.options import add_flags, given
from core.paths import prepare_folder
from core.training.events import Output
from core.training.settings import PRESETS, RESUME_OVERRIDABLE, StopRequested, TrainConfig, default_run_name

EXIT_FOR = {"interrupted": 130, "terminated": 143, "hangup": 129, "reader_gone": 141}
REASON_FOR = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hangup"}


class Signals:
    """What SIGINT, SIGTERM and SIGHUP do to a training process.

    1st: ask the trainer to stop (between batches it evaluates and saves a final checkpoint);
    2nd: say that the stop is under way and wait for it (a save is never cut short by an impatient key);
    3rd: abort at once, saying so: no final checkpoint (atomic writes leave no partial file);
    4th and later, during that exit: leave without running exit callbacks (no traceback from them).
    Messages go through os.write: a handler may run while the main code is inside a write to stderr."""

    def __init__(self, stop: StopRequested):
        self.stop = stop
        self.count = 0
        self.run_dir: Path | None = None  # known once the run is set up: the abort message names `last`

    def install(self) -> None:
        for signum in REASON_FOR:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # under nohup: a closed terminal must not stop the run
            signal.signal(signum, self)

    def __call__(self, signum, _frame) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.stop.set(REASON_FOR.get(signum, "interrupted"))
        elif self.count == 2:
            _say(
                f"{name} again: stopping as soon as the batch, the evaluation and the final checkpoint are "
                f"done; send {name} a third time to abort without that checkpoint\n"
            )
        elif self.count > 3:  # during the abort's own exit: leave at once, no atexit callbacks to cut short
            os._exit(EXIT_FOR.get(self.stop.reason, 130))
        else:
            last = self.run_dir / "last.safetensors" if self.run_dir is not None else None
            kept = (
                f"the run's last checkpoint is {last}"
                if last is not None and last.exists()
                else ("no checkpoint of this run was saved")
            )
            _say(f"{name} a third time: aborted without a final checkpoint; {kept}\n")
            raise SystemExit(EXIT_FOR.get(self.stop.reason, 130))


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))


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
    signals = Signals(stop)
    # First thing, before torch loads: a Stop that arrives during start-up is honoured, not a traceback.
    signals.install()

    args = build_parser().parse_args(argv)
    cfg, flags = config_from_args(args)
    if args.init_from:
        cfg = fine_tune_config(args, flags)
    if not args.resume:
        cfg.check()
    if args.run_dir is not None:
        run_dir = args.run_dir
    elif args.resume:
        run_dir = Path(args.resume).parent
    else:
        run_dir = prepare_folder(args.checkpoints, "--checkpoints") / default_run_name(cfg)
    signals.run_dir = run_dir

    from core.training import distributed as dist
    from core.training import memory
    from core.training.trainer import Trainer

    if args.resume:  # bad input fails in these constructors, before any output is opened
        overrides = {k: v for k, v in flags.items() if k in RESUME_OVERRIDABLE}
        trainer = Trainer.resume(args.resume, run_dir, overrides=overrides, stop=stop)
        for name in sorted(set(flags) - RESUME_OVERRIDABLE):  # once the resume is accepted: a refusal
            flag = TrainConfig.specs()[name].flag  # stays one line
            sys.stderr.write(f"warning: {flag} is fixed by the checkpoint; ignored\n")
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
    try:
        if dist.is_main():  # under torchrun, rank 0 alone writes events and logs
            if args.resume:
                trainer.folder.trim_events(trainer.progress.step)
            gone = lambda: stop.set("reader_gone")  # noqa: E731
            output = Output(Path(run_dir), args.events == "jsonl", args.quiet, on_reader_gone=gone)
            trainer.on_event = output
        summary = trainer.run()
    finally:
        trainer.folder.release()
        if output is not None:
            output.close()
        dist.teardown()
    return EXIT_FOR.get(summary["status"], 0)


if __name__ == "__main__":
    run(main)
