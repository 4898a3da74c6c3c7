"""Encoded poems -> batches of (inputs, targets, mask) tensors, in two modes.

poem_batches: one poem per row, `<bos> c1 … cn` -> `c1 … cn <eos>`, padded to the longest row. With
bucket=True poems are shuffled, cut into chunks of BUCKET_CHUNK batches, sorted by length within a chunk
and batched, and the batches shuffled: rows of a batch have similar lengths, so little padding is
computed, while each epoch still mixes poems differently.

stream_batches: the assignment's mode. The poems, each framed `<bos> … <eos>`, form one stream; each
row is a random crop of seq_len tokens and its target is the crop shifted by one. A target that is
<bos> (the start of the next poem, always after <eos>) does not count: poem mode never asks for it.

mixed_batches: half the poems (a different half each epoch) in poem batches, the other half joined into
a stream and cropped. Poem rows teach the start of a poem from the empty state, as evaluation scores it;
stream rows run the LSTM over several poems in a row, so its state stays sensible far beyond the length
of a regular poem (a model trained on poem rows alone loses its way after ~64 characters of a long 古体
poem: docs/REPORT.md §6).

Both are deterministic in (seed, epoch) (see buckets.rng_for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.corpus.buckets import SEQ_MODES, plan_poem_batches, rng_for
from core.corpus.vocab import BOS, EOS, PAD

MIXED_STREAM_SHARE = 0.5  # of the poems, in mixed mode


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T] long
    targets: torch.Tensor  # [B, T] long
    mask: torch.Tensor  # [B, T] bool: True where the target counts
    lengths: torch.Tensor  # [B] long: real input positions of each row (n + 1 for a poem)
    tokens: int  # mask.sum()

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return Batch(move(self.inputs), move(self.targets), move(self.mask), move(self.lengths), self.tokens)

    def __len__(self) -> int:
        return self.inputs.shape[0]


def _poem_batch(rows: list[list[int]]) -> Batch:
    width = max(len(r) for r in rows) + 1
    inputs = np.full((len(rows), width), PAD, dtype=np.int64)
    targets = np.full((len(rows), width), PAD, dtype=np.int64)
    lengths = np.array([len(r) + 1 for r in rows], dtype=np.int64)
    inputs[:, 0] = BOS
    for b, row in enumerate(rows):
        inputs[b, 1 : len(row) + 1] = row
        targets[b, : len(row)] = row
        targets[b, len(row)] = EOS
    mask = np.arange(width)[None, :] < lengths[:, None]
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        torch.from_numpy(mask),
        torch.from_numpy(lengths),
        int(lengths.sum()),
    )


def poem_batches(
    encoded: list[list[int]],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    bucket: bool = True,
) -> list[Batch]:
    """One poem per row, padded; see the module docstring. Every poem appears exactly once."""
    plan = plan_poem_batches(
        [len(p) for p in encoded], batch_size, seed=seed, epoch=epoch, shuffle=shuffle, bucket=bucket
    )
    return [_poem_batch([encoded[i] for i in batch]) for batch in plan]


def stream_batches(
    encoded: list[list[int]], batch_size: int, seq_len: int, *, seed: int, epoch: int
) -> list[Batch]:
    """Random crops of seq_len from `<bos> poem <eos> <bos> poem <eos> …`; about one pass over the stream."""
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be at least 1")
    if not encoded:
        return []
    stream = np.fromiter((t for p in encoded for t in (BOS, *p, EOS)), dtype=np.int64)
    stream = np.concatenate([stream, np.full(max(seq_len + 1 - len(stream), 0), PAD, dtype=np.int64)])
    n_crops = max((len(stream) - 1) // seq_len, 1)
    rng = rng_for("stream", seed, epoch)
    starts = np.array([rng.randrange(len(stream) - seq_len) for _ in range(n_crops)], dtype=np.int64)
    window = starts[:, None] + np.arange(seq_len)[None, :]
    inputs, targets = stream[window], stream[window + 1]
    lengths = (inputs != PAD).sum(axis=1)
    mask = (targets != PAD) & (targets != BOS)
    batches = []
    for b in range(0, n_crops, batch_size):
        m = torch.from_numpy(mask[b : b + batch_size].copy())
        batches.append(
            Batch(
                torch.from_numpy(inputs[b : b + batch_size].copy()),
                torch.from_numpy(targets[b : b + batch_size].copy()),
                m,
                torch.from_numpy(lengths[b : b + batch_size].copy()),
                int(m.sum()),
            )
        )
    return batches


def mixed_batches(
    encoded: list[list[int]], batch_size: int, seq_len: int, *, seed: int, epoch: int, crops: int = 0
) -> list[Batch]:
    """Poem batches (batch_size poems) of half the poems and stream crops (`crops` of them a batch; 0: as
    many as batch_size) of the other half, shuffled together."""
    rng = rng_for("mixed", seed, epoch)
    order = list(range(len(encoded)))
    rng.shuffle(order)
    cut = round(MIXED_STREAM_SHARE * len(order))
    streamed = stream_batches(
        [encoded[i] for i in order[:cut]], crops or batch_size, seq_len, seed=seed, epoch=epoch
    )
    whole = poem_batches([encoded[i] for i in order[cut:]], batch_size, seed=seed, epoch=epoch)
    batches = whole + streamed
    rng.shuffle(batches)
    return batches


def batches_for_mode(
    encoded: list[list[int]],
    mode: str,
    batch_size: int,
    seq_len: int,
    *,
    seed: int,
    epoch: int,
    crops: int = 0,
) -> list[Batch]:
    """One epoch's training batches in `mode` (one of SEQ_MODES); crops: rows of a batch of crops (0: as
    many as batch_size)."""
    if mode == "stream":
        return stream_batches(encoded, crops or batch_size, seq_len, seed=seed, epoch=epoch)
    if mode == "mixed":
        return mixed_batches(encoded, batch_size, seq_len, seed=seed, epoch=epoch, crops=crops)
    if mode == "poem":
        return poem_batches(encoded, batch_size, seed=seed, epoch=epoch)
    raise ValueError(f"unknown sequence mode {mode!r}; choose one of {', '.join(SEQ_MODES)}")
