"""`python -m core.evaluate CKPT --split dev|test --json`: perplexity on a split, as DESIGN.md §4 defines it
(core.training.perplexity), and with --quality the figures of poems sampled from the checkpoint."""

from __future__ import annotations

# --- command line ----------------------------------------------------------------------------------------


def build_parser():
    from core.cli import ArgumentParser

    p = ArgumentParser(prog="python -m core.evaluate", description="Perplexity of a checkpoint on a split.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or a run folder (its best checkpoint)")
    p.add_argument("--split", choices=["train", "dev", "test"], default="dev")
    p.add_argument(
        "--corpus",
        help="score on this corpus instead of the checkpoint's own (unknown characters "
        "count as <unk> targets)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--quality",
        action="store_true",
        help="also sample poems for the seven assignment starts and measure their quality",
    )
    p.add_argument("--samples", type=int, default=20, help="with --quality: poems per start character")
    p.add_argument("--seed", type=int, default=0, help="with --quality: sampling seed")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    from core.cli import print_json
    from core.corpus import load_recorded_corpus
    from core.errors import PoemError
    from core.runs.checkpoint import load_checkpoint
    from core.runs.folder import resolve_checkpoint
    from core.training.perplexity import evaluate

    args = build_parser().parse_args(argv)
    path = resolve_checkpoint(Path(args.checkpoint))
    ckpt = load_checkpoint(path, map_location=args.device)
    own = ckpt.meta["corpus"]
    corpus = load_recorded_corpus(own, args.corpus)
    same_corpus = corpus.fingerprint == own.get("fingerprint")
    poems = corpus.splits.get(args.split) or []
    if not poems:
        raise PoemError(f"corpus {corpus.name} has no {args.split} split (tang300 has train and dev only)")
    vocab = ckpt.vocab
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
