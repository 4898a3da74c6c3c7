"""python -m core.corpus fetch [--source DIR|TGZ] [--force] | stats --corpus NAME [--json] ...

Neither command needs torch: fetch must stay fast, and stats measures padding from the batch plan.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.corpus.load import FORMS
from core.options import add_option


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m core.corpus", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    fetch = commands.add_parser("fetch", help="obtain chinese-poetry@2.0.1 into data/ (integrity-checked)")
    fetch.add_argument(
        "--source", type=Path, help="a chinese-poetry checkout, an unpacked npm package, or its .tgz"
    )
    fetch.add_argument("--force", action="store_true", help="fetch again even when the corpus is complete")

    stats = commands.add_parser("stats", help="poems, characters, vocabulary, splits, OOV and padding")
    add_option(stats, "corpus", str, None, "tang300, quantangshi, or a path to a poem file", required=True)
    stats.add_argument("--script", choices=("simplified", "traditional"), default="simplified")
    stats.add_argument("--forms", choices=FORMS, help="default: regular for quantangshi, else all")
    stats.add_argument(
        "--train-forms",
        choices=FORMS,
        help="all: the train split also holds the poems --forms regular leaves out (dev and test stay)",
    )
    add_option(stats, "min_freq", int, 1, "vocabulary: keep characters seen this often", low=1)
    add_option(stats, "batch_size", int, 64, "for the padding fraction of poem batches", low=1)
    stats.add_argument("--no-cache", action="store_true", help="process the sources even if a cache is valid")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch":
        from core.corpus.fetch import fetch

        fetch(args.source, force=args.force)
        return 0

    from core.corpus.load import load_corpus
    from core.corpus.stats import corpus_stats

    corpus = load_corpus(
        args.corpus,
        script=args.script,
        forms=args.forms,
        train_forms=args.train_forms,
        use_cache=not args.no_cache,
    )
    stats = corpus_stats(corpus, batch_size=args.batch_size, min_freq=args.min_freq)
    if args.json:
        print_json(stats)
    else:
        print_human(stats)
    return 0


def print_human(s: dict) -> None:
    p = s["poems"]
    lines = [
        f"corpus       {s['corpus']}  ({s['options']['script']}, forms {s['options']['forms']})",
        f"poems        {p['total']:,}: train {p['train']:,} / dev {p['dev']:,} / test {p['test']:,}"
        f"  (of {s['source_poems']:,} in the source)",
        f"characters   {s['characters']:,} ({s['distinct_characters']:,} distinct)",
        f"vocabulary   {s['vocab_size']:,} from train (min freq {s['min_freq']}), "
        f"dev OOV {s['dev_oov_rate']:.2%}",
        f"padding      {s['padding_fraction']:.2%} of poem batches of {s['batch_size']}",
        "dropped      " + (", ".join(f"{r} {n:,}" for r, n in s["dropped"].items()) or "none"),
        *(
            [
                f"split        {cut['poems']:,} poems over {cut['limit']:,} characters into "
                f"{cut['pieces']:,} pieces"
            ]
            if (cut := s.get("split_long"))
            else []
        ),
        "lengths      " + ", ".join(f"{k}: {v:,}" for k, v in s["length_histogram"].items()),
        f"split seed   {s['split_seed']}, fingerprint {s['fingerprint'][:16]}, "
        f"loaded in {s['load_seconds']:.2f} s (cache {s['cache']})",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    run(main, needs_torch=False)
