"""`python -m core.generate CKPT --start 山`: write poems with a trained checkpoint.

Prints one poem a line (or, with --json, one object: the poems with per-character log-probabilities and
the settings used). `--assignment` writes the seven poems the assignment asks for, one for each of
日、红、山、夜、湖、海、月.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings
from core.options import add_flags, add_option, device_problem, given
from core.runs.folder import resolve_checkpoint

ASSIGNMENT_STARTS = "日红山夜湖海月"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.generate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint (or a run folder: its best)")
    add_flags(p, SampleSettings)  # each sampling setting parsed and range-checked as it is read
    p.add_argument("--assignment", action="store_true", help="one poem for each of " + ASSIGNMENT_STARTS)
    add_option(p, "device", str, "cpu", "cpu or cuda (cuda:N)", test=device_problem)
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="sample with a bfloat16 copy of the model where the hardware has bf16 (auto: 2x faster)",
    )
    add_option(
        p, "benchmark", int, None, "time checkpoint loading and N single 七绝 poems (4×7), print the figures "
        "and exit", low=1, high=200, none="off",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def benchmark(path: Path, repeats: int, device: str, precision: str = "auto") -> dict:
    """Load time (after imports) and the latency of one 4×7 poem, batch 1, median over `repeats`."""
    import statistics

    import torch

    t0 = time.perf_counter()
    sampler = Sampler.from_checkpoint(path, device=device, precision=precision)
    load_s = time.perf_counter() - t0
    settings = SampleSettings(start="山", form="7", lines=4, num=1)
    sampler.generate(SampleSettings(**{**settings.to_dict(), "seed": 0}))  # warm-up
    times = []
    for i in range(max(repeats, 1)):
        gen = torch.Generator().manual_seed(i)
        t1 = time.perf_counter()
        sampler.generate(settings, generator=gen)
        times.append(time.perf_counter() - t1)
    cfg = sampler.model.cfg
    return {
        "checkpoint": str(path),
        "load_s": round(load_s, 4),
        "poem_ms_median": round(1e3 * statistics.median(times), 2),
        "poem_ms_p90": round(1e3 * sorted(times)[int(0.9 * (len(times) - 1))], 2),
        "repeats": len(times),
        "model": {
            "vocab": cfg.vocab_size,
            "embed": cfg.embed_size,
            "hidden": cfg.hidden_size,
            "layers": cfg.num_layers,
        },
        "threads": torch.get_num_threads(),
        "device": device,
        "precision": sampler.precision,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = {k: v for k, v in given(args, SampleSettings).items() if k != "start"}
    SampleSettings(**base).check()  # settings that do not go together: refused before the model loads
    if args.benchmark:
        result = benchmark(resolve_checkpoint(args.checkpoint), args.benchmark, args.device, args.precision)
        if args.json:
            print_json(result)
        else:
            print(
                f"load {result['load_s'] * 1e3:.0f} ms; one 4×7 poem: "
                f"median {result['poem_ms_median']:.1f} ms, p90 {result['poem_ms_p90']:.1f} ms "
                f"over {result['repeats']} ({result['model']}, {result['precision']})"
            )
        return 0
    t0 = time.perf_counter()
    sampler = Sampler.from_checkpoint(
        resolve_checkpoint(args.checkpoint), device=args.device, precision=args.precision
    )
    load_s = time.perf_counter() - t0
    starts = list(ASSIGNMENT_STARTS) if args.assignment else [args.start]
    poems, warnings, used = [], [], None
    # One random stream across the starts: with a fresh stream per start, the same draws after the first
    # character made 山… and 海… the same poem (the report's failure, one line for every start).
    generator = None
    if args.seed is not None:
        import torch

        generator = torch.Generator().manual_seed(args.seed)
    t1 = time.perf_counter()
    for start in starts:
        settings, warn = sampler.check(SampleSettings(start=start, **base))
        warnings += warn
        used = settings
        for poem in sampler.generate(settings, generator):
            poems.append({"start": settings.start, **poem.to_dict()})
    gen_s = time.perf_counter() - t1
    for w in warnings:
        sys.stderr.write(f"warning: {w}\n")
    if args.json:
        settings_out = used.to_dict()
        settings_out["start"] = list(starts) if args.assignment else settings_out["start"]
        print_json(
            {
                "poems": poems,
                "settings": settings_out,
                "checkpoint": str(args.checkpoint),
                "warnings": warnings,
                "load_s": round(load_s, 4),
                "generate_s": round(gen_s, 4),
            }
        )
    else:
        for poem in poems:
            print(poem["text"])
    return 0


if __name__ == "__main__":
    run(main)
