"""The figures `python -m core.corpus stats` reports (DESIGN.md §2 names the keys checks read)."""

from __future__ import annotations

from collections import Counter

from core.corpus.buckets import padding_fraction, plan_poem_batches
from core.corpus.load import MAX_USER_POEM_CHARS, Corpus
from core.corpus.splits import SPLIT_NAMES

HISTOGRAM_BIN = 16
HISTOGRAM_TOP = 256  # lengths from here on share one bin


def length_histogram(texts: list[str]) -> dict[str, int]:
    """Poems per length range, in characters (punctuation included): {"16-31": 120, ..., "256+": 3}."""
    bins = Counter(min(len(t) // HISTOGRAM_BIN, HISTOGRAM_TOP // HISTOGRAM_BIN) for t in texts)
    top = HISTOGRAM_TOP // HISTOGRAM_BIN

    def label(b: int) -> str:
        return f"{HISTOGRAM_TOP}+" if b == top else f"{b * HISTOGRAM_BIN}-{(b + 1) * HISTOGRAM_BIN - 1}"

    return {label(b): bins[b] for b in sorted(bins)}


def corpus_stats(corpus: Corpus, *, batch_size: int = 64, min_freq: int = 1) -> dict:
    vocab = corpus.build_vocab(min_freq=min_freq)
    poems = corpus.poems
    dev_chars = "".join(corpus.splits["dev"])
    oov = sum(1 for ch in dev_chars if ch not in vocab)
    train_lengths = [len(t) for t in corpus.splits["train"]]
    plan = plan_poem_batches(train_lengths, batch_size, seed=corpus.split_seed, epoch=0)
    return {
        "corpus": corpus.name,
        "poems": {**{s: len(corpus.splits[s]) for s in SPLIT_NAMES}, "total": len(poems)},
        "characters": sum(map(len, poems)),
        "characters_by_split": {s: sum(map(len, corpus.splits[s])) for s in SPLIT_NAMES},
        "distinct_characters": len(set("".join(poems))),
        "vocab_size": len(vocab),
        "min_freq": min_freq,
        "dev_oov_rate": round(oov / len(dev_chars), 6) if dev_chars else 0.0,
        "dev_oov_tokens": oov,
        "dropped": corpus.dropped,
        "split_long": {**corpus.split_long, "limit": MAX_USER_POEM_CHARS} if corpus.split_long else {},
        "source_poems": corpus.source_poems,
        "padding_fraction": round(padding_fraction(train_lengths, plan), 6),
        "batch_size": batch_size,
        "length_histogram": length_histogram(poems),
        "max_length": max(map(len, poems)),
        "split_seed": corpus.split_seed,
        "options": corpus.options,
        "fingerprint": corpus.fingerprint,
        "splits_digest": corpus.splits_digest(),
        "cache": corpus.cache,
        "load_seconds": corpus.load_seconds,
    }
