"""Which poems share a batch: length buckets, without torch (`stats` reports padding from this plan)."""

from __future__ import annotations

import random

BUCKET_CHUNK = 50  # batches per sorted chunk
SEQ_MODES = ("poem", "stream", "mixed")  # how training rows are made (core.corpus.batching)
CROPPED_MODES = ("stream", "mixed")  # the modes whose rows are crops of seq_len


def rng_for(kind: str, seed: int, epoch: int) -> random.Random:
    """Seeded by a string, which Python hashes with sha512 (not hash()): the same draws in every process."""
    return random.Random(f"{kind}:{seed}:{epoch}")


def plan_poem_batches(
    lengths: list[int], batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, bucket: bool = True
) -> list[list[int]]:
    """The poem indices of each batch (no torch needed: `stats` measures padding with it)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rng = rng_for("poems", seed, epoch)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    if bucket:
        chunk = batch_size * BUCKET_CHUNK if shuffle else max(len(order), 1)
        chunks = [order[c : c + chunk] for c in range(0, len(order), chunk)]
        order = [i for part in chunks for i in sorted(part, key=lengths.__getitem__)]
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    if shuffle and bucket:
        rng.shuffle(batches)
    return batches


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Padded positions / all positions of the input tensors (a poem of n characters fills n + 1)."""
    total = sum(len(b) * (max(lengths[i] for i in b) + 1) for b in batches)
    real = sum(lengths[i] + 1 for b in batches for i in b)
    return 1 - real / total if total else 0.0
