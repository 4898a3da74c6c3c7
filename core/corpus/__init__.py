"""The corpus: chinese-poetry's 全唐诗 and 唐诗三百首 (or a user's poems) -> splits -> vocabulary -> batches.

    from core.corpus import load_corpus, poem_batches
    corpus = load_corpus("tang300")                 # or "quantangshi", or a path to a user file
    vocab = corpus.build_vocab()                    # train split only
    batches = poem_batches([vocab.encode(p) for p in corpus.splits["train"]], 64, seed=0, epoch=0)

Batch and the batch makers import torch; they are loaded on first use so that
`python -m core.corpus fetch` and `stats` start quickly.
"""

from core.corpus.clean import DROP_REASONS, normalize_text
from core.corpus.fetch import data_dir, package_dir
from core.corpus.load import NAMED, Corpus, load_corpus, load_recorded_corpus
from core.corpus.splits import SPLIT_SEED
from core.corpus.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab

_TORCH_NAMES = ("Batch", "batches_for_mode", "mixed_batches", "poem_batches", "stream_batches")

__all__ = [
    "BOS",
    "DROP_REASONS",
    "EOS",
    "NAMED",
    "PAD",
    "SPECIALS",
    "SPLIT_SEED",
    "UNK",
    "Batch",
    "Corpus",
    "Vocab",
    "batches_for_mode",
    "data_dir",
    "load_corpus",
    "load_recorded_corpus",
    "mixed_batches",
    "normalize_text",
    "package_dir",
    "poem_batches",
    "stream_batches",
]


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from core.corpus import batching

        return getattr(batching, name)
    raise AttributeError(f"module 'core.corpus' has no attribute {name!r}")
