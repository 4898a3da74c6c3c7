"""`python -m core.bench`: our LSTM against torch.nn.LSTM (the method: core/bench/__init__.py)."""

from __future__ import annotations

import argparse
import sys

import torch

from core.bench.memory import child_memory, memory_in_children
from core.bench.models import CONFIGS, GROUPS, quick
from core.bench.timing import CLOCKS, measure
from core.cli import ArgumentParser, print_json, run
from core.errors import PoemError
from core.model import resolve_precision
from core.options import add_option
from core.training.memory import keep_freed_memory


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=[*GROUPS, "poem-1layer"], default="all", help="which configurations")
    add_option(
        p, "repeats", int, None, "timed units per side and measure (median)", low=1, high=10_000,
        none="10; 3 with --quick",
    )  # fmt: skip
    add_option(p, "threads", int, None, "torch threads", low=1, high=1024, none="torch's choice")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: both sides train and infer under a bfloat16 autocast (agreement is checked in fp32)",
    )
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a busy machine; use --threads 1)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--child-memory", choices=["ours", "reference"], help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PoemError("--device cuda: no CUDA device is available")
    if args.precision == "bf16" and resolve_precision("auto", torch.device(args.device)) != "bf16":
        raise PoemError(
            "--precision bf16: this machine computes no bfloat16 natively (CPU: AVX512-BF16 or AMX), and "
            "nn.LSTM's oneDNN kernel refuses it; compare in fp32"
        )
    kept = keep_freed_memory()  # as core.train does (core/training/memory.py); both sides profit
    if args.threads or args.quick:  # quick: one thread, steadier on a busy machine
        torch.set_num_threads(args.threads or 1)
    names = GROUPS.get(args.config, [args.config])
    configs = {n: quick(CONFIGS[n]) if args.quick else CONFIGS[n] for n in names}

    if args.child_memory:
        print_json(child_memory(configs[names[0]], args.child_memory, args.device, args.precision))
        return 0

    from core.lstm import compiled_loops
    from core.lstm.matmul import onednn_works

    results = {}
    for name, cfg in configs.items():
        results[name] = measure(cfg, args.repeats, args.device, CLOCKS[args.clock], args.precision)
        for side, mem in memory_in_children(name, args).items():
            results[name][side].update(mem)
    main_cfg = results[names[0]]
    report = {
        "ours": main_cfg["ours"],
        "reference": main_cfg["reference"],
        "train_ratio": main_cfg["train_ratio"],
        "infer_ratio": main_cfg["infer_ratio"],
        "recurrent_train_ratio": main_cfg["recurrent_train_ratio"],
        "generation_ratio": main_cfg["generation_ratio"],
        "agreement_passed": all(r["agreement"]["passed"] for r in results.values()),
        "main_config": names[0],
        "configs": results,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "precision": args.precision,
        "gemm": "oneDNN" if args.device == "cpu" and onednn_works() else "torch",
        "lstm_loops": "python" if compiled_loops(args.device, torch.float32) is None else "compiled",
        "malloc_keeps_freed_memory": kept,
        "repeats": args.repeats,
        "clock": args.clock,
        "quick": args.quick,
    }
    if args.json:
        print_json(report)
    else:
        print_table(report)
    return 0 if report["agreement_passed"] else 1


def print_table(report: dict) -> None:
    w = sys.stderr.write
    w(f"torch {report['torch']}, {report['threads']} threads, {report['device']}, {report['precision']},"
      f" GEMM: {report['gemm']}, our loops: {report['lstm_loops']},"
      f" malloc keeps freed memory: {'yes' if report['malloc_keeps_freed_memory'] else 'no'}\n")  # fmt: skip
    w(f"{'config':<12} {'':>10} {'train tok/s':>12} {'infer tok/s':>12} {'LSTM tok/s':>11} {'gen ms':>8}"
      f" {'peak MB':>8}\n")  # fmt: skip
    for name, r in report["configs"].items():
        for side in ("ours", "reference"):
            s = r[side]
            w(f"{name if side == 'ours' else '':<12} {side:>10} {s['train_tokens_per_s']:>12.0f}"
              f" {s['infer_tokens_per_s']:>12.0f} {s['recurrent_train_tokens_per_s']:>11.0f}"
              f" {s['generation_ms_per_poem']:>8.1f} {s['peak_rss_mb']:>8.0f}\n")  # fmt: skip
        w(f"{'':<12} {'ratio':>10} {r['train_ratio']:>12.2f} {r['infer_ratio']:>12.2f}"
          f" {r['recurrent_train_ratio']:>11.2f} {r['generation_ratio']:>8.2f}"
          f"   agree: {'yes' if r['agreement']['passed'] else 'NO'}\n")  # fmt: skip


if __name__ == "__main__":
    run(main)
