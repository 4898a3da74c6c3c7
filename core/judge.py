"""`python -m core.judge CKPT [sampling options] [--poems N] [--seed S] [--json]`: generated vs real poems.

Samples N poems (default 1,000) whose start characters and forms are those of N real poems of the
checkpoint's corpus (test split; dev where there is none), reports both sets side by side (form, rhyme,
格律, diversity, copying, length, log-probability, character distribution) and how well two classifiers
tell them apart (an n-gram logistic regression and a CNN over characters and tones, 5-fold; 0.5 = cannot).
The sampling options are core.generate's, but for those the real poems give (start, form, lines, acrostic,
num); --seed seeds the choice of real poems, the sampling and the classifiers.

`--sweep` judges every combination of --sweep-* values against the same real poems and writes a JSON file,
a Markdown table and an SVG plot (accuracy against rhyme rate) to docs/results/judge-sweep-CORPUS.*.
The method: core/generation/judge.py, core/generation/discriminators.py and docs/REPORT.md §10.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.errors import PoemError
from core.generation.judge import PER_POEM
from core.generation.settings import SampleSettings
from core.options import OptionError, add_flags, add_option, device_problem, given
from core.paths import why

PRECISIONS = ("auto", "fp32", "bf16")
REPO = Path(__file__).resolve().parents[1]
SWEEP_DEFAULTS = {
    "prosody": "none,rhyme,soft,gelv",
    "prosody_weight": "",
    "temperature": "0.8,1",
    "top_p": "0.9,1",
    "repetition_penalty": "1,1.1",
}
ROWS = (
    "valid_form",
    "rhyme_rate",
    "gelv_passed",
    "tone_conformity",
    "distinct_1",
    "distinct_2",
    "copy_rate",
    "mean_length",
    "char_js_divergence",
    "repeated_line",
    "mean_logprob",
)


def _values_of(name: str):
    """A comma-separated list of one setting's values, each checked by its declaration."""
    spec = SampleSettings.specs()[name]

    def parse(text: str) -> list:
        try:
            return [spec.parse(part) for part in text.split(",") if part.strip()]
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "list"
    return parse


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.judge", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint (or a run folder: its best)")
    add_flags(p, SampleSettings, only=[k for k in SampleSettings.specs() if k not in PER_POEM])
    add_option(p, "poems", int, 1000, "generated and real poems", low=10, high=100_000)
    add_option(p, "seed", int, 0, "real poems, sampling, folds", low=0, high=2**32 - 1)
    add_option(p, "device", str, "cpu", "cpu or cuda (cuda:N)", test=device_problem)
    add_option(p, "precision", str, "auto", "sampling precision, as core.generate's", choices=PRECISIONS)
    p.add_argument("--sweep", action="store_true", help="judge every combination of the --sweep-* values")
    for name, default in SWEEP_DEFAULTS.items():
        p.add_argument(
            f"--sweep-{name.replace('_', '-')}",
            dest=f"sweep_{name}",
            type=_values_of(name),
            default=_values_of(name)(default),
            help=f"with --sweep: comma-separated {name} values (default: {default or 'its flag value'})",
        )
    p.add_argument(
        "--out", type=Path, help="with --sweep: output prefix (default docs/results/judge-sweep-CORPUS)"
    )
    p.add_argument(
        "--write-poems",
        type=Path,
        metavar="FILE",
        help="also write the generated and real poems, one JSON object a line",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # each poem's form is its real partner's: the settings are checked as for a regular one (a free poem
    # is sampled without prosody)
    base = SampleSettings(**{**given(args, SampleSettings), "form": "5"})
    base.check()  # settings that do not go together: refused before the checkpoint loads
    from core.generation.judge import Judge
    from core.runs.folder import resolve_checkpoint

    judge = Judge.load(
        resolve_checkpoint(args.checkpoint),
        poems=args.poems,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )
    if args.sweep:
        return sweep(judge, base, args)
    result = judge.run(base)
    if args.write_poems:
        from core.runs.atomic import atomic_write_bytes

        pairs = zip(judge.real, judge.texts, strict=True)
        lines = [json.dumps({"real": r, "generated": g}, ensure_ascii=False) + "\n" for r, g in pairs]
        try:
            atomic_write_bytes(args.write_poems, "".join(lines).encode("utf-8"))
        except OSError as exc:
            raise PoemError(f"--write-poems {args.write_poems}: cannot write it ({why(exc)})") from None
    if args.json:
        print_json(result)
    else:
        print(render(result))
    return 0


def sweep(judge, base: SampleSettings, args) -> int:
    from core.generation import judge_sweep

    values = {name: getattr(args, f"sweep_{name}") for name in SWEEP_DEFAULTS}
    settings = judge_sweep.grid(base, values)
    for s in settings:
        s.check()
    prefix = args.out or REPO / "docs" / "results" / f"judge-sweep-{Path(judge.corpus_name).stem}"
    say = None if args.json else (lambda line: sys.stderr.write(line + "\n"))
    doc = judge_sweep.run(judge, settings, Path(prefix), say=say)
    if args.json:
        print_json({k: v for k, v in doc.items()})
    else:
        print(judge_sweep.table(doc))
        if doc.get("pick"):
            verdict = "meets every target" if doc["pick_meets_all"] else "misses a discriminator target"
            print(f"best setting ({verdict}): {doc['pick']}\n  core.generate flags: {doc['pick_flags']}")
        else:
            print("no setting meets the rhyme, 格律 and distinct-2 targets")
        print(f"written: {prefix}.json, .md, .svg")
    return 0


def render(result: dict) -> str:
    g, r = result["generated"], result["real"]
    out = [
        f"{result['poems']} generated vs {result['poems']} real poems ({result['corpus']} {result['split']})",
        f"{'':20}{'generated':>12}{'real':>12}",
    ]
    for key in ROWS:
        out.append(f"{key:20}{_show(g.get(key)):>12}{_show(r.get(key)):>12}")
    for name, d in result["discriminators"].items():
        lo, hi = d["ci95"]
        out.append(
            f"{name} discriminator: accuracy {d['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] (0.5: cannot tell)"
        )
    out.append("seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()))
    return "\n".join(out)


def _show(value) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    run(main)
