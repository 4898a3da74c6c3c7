"""A character Transformer: the reference our LSTM is compared with in `python -m core.experiments
architectures`, as torch.nn.LSTM is in core.bench. Never the workbench's model.

torch.nn.TransformerEncoder with a causal mask (pre-norm, GELU), learned positions, the output layer tied to
the embedding. It takes the same batches as PoetryLM and answers the same calls (`model(inputs, lengths,
state, mask)`), so the trainer's perplexity and the sampler work on it unchanged: its "state" is the ids
seen so far, and each call attends over all of them (no cache: a poem is short).

It trains with its own small loop (`train_for`): the same data, the same optimizer, the same matmul
precision as the LSTM runs (bf16 autocast where the CPU computes it natively; evaluation in float32, as the
trainer's), a cosine learning rate over the time budget, evaluations on the whole dev split, events written
as a run's metrics.jsonl, so that its curves sit next to the LSTM runs'. No checkpoints: the experiment
scores it in-process.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from core.model import autocast, token_cross_entropy
from core.training.perplexity import result_from_sums, score_poems


@dataclass
class TransformerConfig:
    vocab_size: int
    d_model: int = 256
    heads: int = 4
    layers: int = 6
    feedforward: int = 1024
    dropout: float = 0.1
    max_len: int = 1024  # longest input it can read (a 全唐诗 regular poem has 65 with <bos>)


class TransformerLM(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = nn.Embedding(cfg.max_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.heads,
            cfg.feedforward,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, inputs, lengths=None, state=None, mask=None):
        """inputs [B, T] -> logits [B, T, V] (or [N, V] at `mask`), and the state: every id seen so far."""
        seen = inputs if state is None else torch.cat([state, inputs], dim=1)
        if seen.shape[1] > self.cfg.max_len:
            raise ValueError(f"the Transformer reads at most {self.cfg.max_len} positions")
        S, T = seen.shape[1], inputs.shape[1]
        x = self.embedding(seen) + self.positions(torch.arange(S, device=seen.device))
        causal = nn.Transformer.generate_square_subsequent_mask(S, device=seen.device, dtype=x.dtype)
        h = self.norm(self.encoder(x, mask=causal, is_causal=True))[:, S - T :]
        if mask is not None:
            h = h[mask]
        return h @ self.embedding.weight.t() + self.head_bias, seen

    def parameters_without_embeddings(self) -> int:
        skip = {id(self.embedding.weight), id(self.positions.weight), id(self.head_bias)}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


def train_for(
    model: TransformerLM,
    batches_for,
    dev_ids: list[list[int]],
    run_dir: Path,
    *,
    minutes: float,
    lr: float = 1e-3,
    warmup: int = 200,
    eval_every: int = 400,
    clip: float = 1.0,
    seed: int = 2019,
    precision: str = "fp32",
) -> dict:
    """Adam with a linear warm-up and a cosine over the time budget; dev perplexity every `eval_every`
    steps and at the end; events to run_dir/metrics.jsonl. Returns the `done` event."""
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log = open(run_dir / "metrics.jsonl", "w", encoding="utf-8")  # noqa: SIM115 (closed below)

    def emit(event: str, **fields) -> dict:
        record = {"event": event, **fields}
        log.write(json.dumps(record) + "\n")
        log.flush()
        return record

    emit("config", model=asdict(model.cfg), minutes=minutes, lr=lr, warmup=warmup, precision=precision)
    start, budget, step, epoch, tokens, losses, best = (
        time.perf_counter(),
        minutes * 60,
        0,
        0,
        0,
        [],
        math.inf,
    )

    def evaluate() -> dict:
        nonlocal best
        total, n, unk = score_poems(model, dev_ids, batch_size=64)
        dev = result_from_sums(total, n, unk, len(dev_ids))
        best = min(best, dev.perplexity)
        train_loss = sum(losses) / len(losses) if losses else None
        losses.clear()
        elapsed = time.perf_counter() - start
        return emit(
            "eval", step=step, loss=train_loss, dev_loss=dev.loss, dev_ppl=dev.perplexity,
            best_dev_ppl=best, elapsed_s=elapsed, tokens_seen=tokens,
        )  # fmt: skip

    try:
        while time.perf_counter() - start < budget:
            for batch in batches_for(epoch):
                elapsed = time.perf_counter() - start
                if elapsed >= budget:
                    break
                factor = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
                for group in optimizer.param_groups:
                    group["lr"] = lr * max(factor, 0.01)
                model.train()
                with autocast("cpu", precision):  # as the trainer's step: the forward pass only
                    logits, _ = model(batch.inputs, lengths=batch.lengths, mask=batch.mask)
                loss = token_cross_entropy(logits, batch.targets[batch.mask])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                step, tokens = step + 1, tokens + batch.tokens
                losses.append(float(loss.detach()))
                if step % eval_every == 0:
                    evaluate()
            epoch += 1
        last = evaluate()
        elapsed = time.perf_counter() - start
        return emit(
            "done", status="time_limit", step=step, best_dev_ppl=best, dev_ppl=last["dev_ppl"],
            elapsed_s=elapsed, tokens_seen=tokens, tokens_per_s=tokens / elapsed, precision=precision,
        )  # fmt: skip
    finally:
        log.close()
