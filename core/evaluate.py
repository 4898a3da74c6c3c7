"""`python -m core.evaluate CKPT --split dev|test --json`: perplexity on a split, as DESIGN.md §4 defines it
(core.training.perplexity), and with --quality the figures of poems sampled from the checkpoint."""

from __future__ import annotations

# --- command line ----------------------------------------------------------------------------------------


def build_parser():
    from core.cli import ArgumentParser
    from core.generation.settings import MAX_POEMS
    from core.options import add_option, device_problem

    p = ArgumentParser(prog="python -m core.evaluate", description="Perplexity of a checkpoint on a split.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or a run folder (its best checkpoint)")
    add_option(p, "split", str, "dev", "the split to score", choices=("train", "dev", "test"))
    add_option(
        p, "corpus", str, None, "score on this corpus instead of the checkpoint's own (unknown characters "
        "count as <unk> targets)", none="the checkpoint's",
    )  # fmt: skip
    add_option(p, "batch_size", int, 64, "poems scored at a time", low=1, high=65536)
    add_option(p, "device", str, "cpu", "cpu or cuda (cuda:N)", test=device_problem)
    p.add_argument(
        "--quality",
        action="store_true",
        help="also sample poems for the seven assignment starts and measure their quality",
    )
    add_option(p, "samples", int, 20, "with --quality: poems per start character", low=1, high=MAX_POEMS)
    add_option(p, "seed", int, 0, "with --quality: sampling seed", low=0, high=2**63 - 1)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    from core.cli import print_json
    from core.corpus import load_recorded_corpus
    from core.corpus.splits import USER_LARGE_MIN
    from core.errors import PoemError
    from core.runs.checkpoint import load_checkpoint
    from core.runs.folder import resolve_checkpoint
    from core.training import budget
    from core.training.perplexity import evaluate

    args = build_parser().parse_args(argv)
    path = resolve_checkpoint(Path(args.checkpoint))
    ckpt = load_checkpoint(path, map_location=args.device)
    own = ckpt.meta["corpus"]
    corpus = load_recorded_corpus(own, args.corpus)
    same_corpus = corpus.fingerprint == own.get("fingerprint")
    poems = corpus.splits.get(args.split) or []
    if not poems:
        present = [f"{name} ({len(corpus.splits[name])})" for name in corpus.splits if corpus.splits[name]]
        why = ""
        if corpus.name not in ("tang300", "quantangshi"):
            why = f"; a corpus of fewer than {USER_LARGE_MIN} poems is split 80/20 into train and dev only"
        raise PoemError(
            f"corpus {corpus.name} has no {args.split} split (it has {', '.join(present)} poems){why}: "
            f"choose --split {' or '.join(n for n in corpus.splits if corpus.splits[n])}"
        )
    vocab = ckpt.vocab
    budget.check_scoring(ckpt.model_config, [len(p) for p in poems], args.batch_size, args.device)
    model = ckpt.build_model(args.device)
    result = evaluate(model, [vocab.encode(p) for p in poems], args.batch_size, args.device)
    out = {
        "checkpoint": str(path),
        "corpus": corpus.name,
        "split": args.split,
        **result.to_dict(),
        "vocab_size": len(vocab),
        "same_corpus": same_corpus,
    }
    if args.quality:
        from core.generation.quality import quality_report

        out["quality"] = quality_report(
            model,
            vocab,
            ckpt,
            samples=args.samples,
            seed=args.seed,
            device=args.device,
            corpus=corpus if same_corpus else None,  # its own corpus is loaded already
        )
    if args.json:
        print_json(out)
    else:
        print(
            f"{corpus.name} {args.split}: perplexity {result.perplexity:.2f} (loss {result.loss:.4f} nats, "
            f"{result.tokens} tokens, {result.unk_tokens} <unk>, {result.poems} poems)"
        )
        if args.quality:
            for key, value in out["quality"]["metrics"].items():
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    from core.cli import run

    run(main)
