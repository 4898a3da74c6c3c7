"""Perplexity, one definition everywhere (DESIGN.md §4), computed the same way for the trainer's
evaluations, `python -m core.evaluate` and the experiments.

PP = exp(total cross-entropy / N) over every poem of the split, each poem fed as `<bos> c1 … cn` and scored
on `c1 … cn <eos>`; N counts those targets (padding never, `<unk>` targets always); dropout off; no poem
truncated; the whole split.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from core.corpus import poem_batches
from core.corpus.vocab import UNK
from core.model import token_cross_entropy


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per target token (nats)
    perplexity: float
    tokens: int
    unk_tokens: int
    poems: int

    def to_dict(self) -> dict:
        return asdict(self)


def score_poems(
    model, encoded: list[list[int]], batch_size: int = 64, device="cpu"
) -> tuple[float, int, int]:
    """(sum of cross-entropy, target tokens, <unk> targets) over all poems, in eval mode, no gradients."""
    was_training = model.training
    model.eval()
    total, tokens, unk = 0.0, 0, 0
    with torch.inference_mode():
        for batch in poem_batches(encoded, batch_size, seed=0, epoch=0, shuffle=False, bucket=True):
            batch = batch.to(device)
            logits, _ = model(batch.inputs, lengths=batch.lengths, mask=batch.mask)
            total += float(token_cross_entropy(logits, batch.targets[batch.mask], reduction="sum"))
            tokens += int(batch.mask.sum())
            unk += int(((batch.targets == UNK) & batch.mask).sum())
    model.train(was_training)
    return total, tokens, unk


def result_from_sums(total: float, tokens: int, unk: int, poems: int) -> EvalResult:
    loss = total / max(tokens, 1)
    return EvalResult(
        loss=loss, perplexity=math.exp(min(loss, 700.0)), tokens=tokens, unk_tokens=unk, poems=poems
    )


def evaluate(model, encoded: list[list[int]], batch_size: int = 64, device="cpu") -> EvalResult:
    total, tokens, unk = score_poems(model, encoded, batch_size, device)
    return result_from_sums(total, tokens, unk, len(encoded))
