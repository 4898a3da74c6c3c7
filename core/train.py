"""`python -m core.train`: train the poetry LSTM headless (a server, a batch job, or the workbench's child).

Every event goes to <run>/metrics.jsonl. On a terminal, a rich progress bar and one log row per evaluation;
otherwise plain log rows on stderr; with `--events jsonl`, the events as JSON lines on stdout (the workbench
reads these). Ctrl-C or SIGTERM saves a final checkpoint, then exits 130 or 143.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

from core.cli import ArgumentParser, run
from core.corpus.load import FORMS
from core.training.events import Output
from core.training.settings import (
    OPTIMIZERS,
    PRESETS,
    SEQ_MODES,
    StopRequested,
    TrainConfig,
    default_run_name,
)

EXIT_FOR = {"interrupted": 130, "terminated": 143}

HELP = {
    "corpus": "tang300, quantangshi, or a path to a UTF-8 file (one poem a line) or chinese-poetry JSON",
    "script": "simplified (OpenCC t2s) or traditional",
    "forms": "quantangshi: regular (五/七言 绝句 and 律诗, the default) or all",
    "train_forms": "all: train also on the poems --forms regular leaves out (dev and test stay regular)",
    "min_freq": "characters seen fewer times in train become <unk>",
    "unk_rate": "replace characters seen once in train by <unk> at this rate, so <unk> is learned",
    "seq_mode": "poem: one poem per sequence (bucketed); stream: poems joined, crops of --seq-len; "
    "mixed: half the poems each way",
    "seq_len": "crop length in stream and mixed mode",
    "crops_per_batch": "crops per batch in stream and mixed mode (0: --batch-size)",
    "embed_size": "embedding size (the assignment's is)",
    "hidden_size": "LSTM hidden size (hs)",
    "tie_weights": "share the embedding and output matrices (needs embed size == hidden size)",
    "init": "default (Xavier in, orthogonal recurrent, forget bias 1), uniform, xavier, or zeros (why not)",
    "lstm_impl": "fused (hand-derived BPTT, fast) or autograd (plain torch ops)",
    "optimizer": "one of " + ", ".join(OPTIMIZERS),
    "lr": "learning rate (default: per optimizer, see docs/REPORT.md)",
    "clip": "max global gradient norm (0: no clipping)",
    "lr_schedule": "plateau (halve the LR when dev loss stalls) or cosine (to lr/100 over the epochs)",
    "precision": "fp32, bf16 (matmuls in bfloat16, state and gradients fp32; evaluation stays fp32) or auto",
    "lr_factor": "multiply the LR by this when dev loss stops improving",
    "lr_patience": "evaluations without improvement before the LR is reduced",
    "patience": "evaluations without a better dev perplexity before stopping early (0: never)",
    "eval_every": "evaluate every N batches (0: at the end of each epoch)",
    "save_every": "save a checkpoint at every k-th evaluation (a new best is always saved)",
    "keep": "keep the newest K checkpoints besides best and last (0: keep all)",
    "max_minutes": "stop after this many minutes, saving a checkpoint (0: no limit)",
    "max_steps": "stop after this many optimizer steps in total, saving a checkpoint (0: no limit)",
    "device": "auto, cpu or cuda",
    "backend": "torch (autograd) or numpy (the hand-derived gradients of docs/lstm-derivatives.md)",
    "sample_on_eval": "write a sample poem at every evaluation",
    "batch_size": "poems (or crops) per batch (the assignment's bs)",
    "num_layers": "stacked LSTM layers",
    "dropout": "dropout on the embedding, between layers and before the output layer",
    "momentum": "momentum of the momentum and nesterov optimizers",
    "weight_decay": "L2 weight decay (decoupled for adamw)",
    "max_bad_steps": "consecutive non-finite steps (skipped) before training stops",
    "seed": "random seed: the same seed gives the same run on CPU",
}


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


CHOICES = {
    "optimizer": OPTIMIZERS,
    "seq_mode": SEQ_MODES,
    "backend": ("torch", "numpy"),
    "lstm_impl": ("fused", "autograd"),
    "lr_schedule": ("plateau", "cosine"),
    "precision": ("auto", "fp32", "bf16"),
    "forms": FORMS,
    "train_forms": FORMS,
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m core.train", description=__doc__.splitlines()[0], argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named configuration; flags override it")
    parser.add_argument(
        "--run-dir", type=Path, help="folder of this run (default: <checkpoints>/<time>-<corpus>-<opt>)"
    )
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of all runs")
    parser.add_argument(
        "--resume", type=Path, help="continue the run of this checkpoint exactly where it stopped"
    )
    parser.add_argument("--events", choices=["jsonl"], help="print every event as a JSON line on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    for f in fields(TrainConfig):
        base = str(f.type).split(" |")[0]
        kind = {"int": _number(int), "float": _number(float), "bool": _parse_bool}.get(base, str)
        default = f.default if f.default is not None else "per optimizer" if f.name == "lr" else "auto"
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            choices=CHOICES.get(f.name),
            metavar=f.name.upper(),
            help=f"{HELP.get(f.name, f.name.replace('_', ' '))} (default: {default})",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig defaults <- preset <- explicit flags (remembered, so resume can honour them)."""
    values: dict = {}
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    names = {f.name for f in fields(TrainConfig)}
    explicit = {k for k in vars(args) if k in names}
    values.update({k: getattr(args, k) for k in explicit})
    cfg = TrainConfig.from_dict(values)
    cfg._explicit = explicit  # type: ignore[attr-defined]
    return cfg


def main(argv: list[str] | None = None) -> int:
    stop = StopRequested()

    def on_signal(signum, _frame):
        stop.set("interrupted" if signum == signal.SIGINT else "terminated")
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    # First thing, before torch loads: a Stop that arrives during start-up is honoured, not a traceback.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if getattr(args, "resume", None):
        run_dir = getattr(args, "run_dir", None) or Path(args.resume).parent
    else:
        cfg.validate()
        run_dir = getattr(args, "run_dir", None) or args.checkpoints / default_run_name(cfg)

    from core.training import distributed as dist
    from core.training import memory
    from core.training.trainer import Trainer

    trainer = Trainer(cfg, run_dir, resume=getattr(args, "resume", None), stop=stop)  # bad input fails here
    memory.keep_freed_memory()  # each step reuses the last one's memory (core/training/memory.py)
    for flag in trainer.ignored_flags:
        sys.stderr.write(
            f"warning: --{flag.replace('_', '-')} is fixed by the checkpoint; ignored on --resume\n"
        )
    output = None
    if dist.is_main():  # under torchrun, rank 0 alone writes events and logs
        if getattr(args, "resume", None):
            from core.runs.metrics import trim_metrics

            trim_metrics(Path(run_dir) / "metrics.jsonl", trainer.progress.step)
        output = Output(
            Path(run_dir), getattr(args, "events", None) == "jsonl", getattr(args, "quiet", False)
        )
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
