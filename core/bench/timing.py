"""The units of work both sides run, their agreement check, and the interleaved timing."""

from __future__ import annotations

import contextlib
import functools
import statistics
import time

import torch

from core.bench.models import BenchConfig, ReferenceLM, build_pair, load_batches
from core.model import PoetryLM, autocast, masked_cross_entropy

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def train_unit(model, optimizer, batches, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    """amp: the autocast each forward pass runs under (a fresh one per step, as the trainer does: within one
    autocast region the bf16 copies of the weights are cached and would miss the optimizer's updates)."""
    for batch in batches:
        with amp():
            logits, _ = model(batch.inputs, lengths=batch.lengths if uses_lengths else None)
        masked_cross_entropy(logits, batch.targets, batch.mask).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def infer_unit(model, batches, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    with torch.no_grad(), amp():
        for batch in batches:
            model(batch.inputs, lengths=batch.lengths if uses_lengths else None)


def recurrent_unit(lstm, inputs, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    """The LSTM alone: forward + backward of a fixed linear function of the real outputs."""
    for x, lengths, weight in inputs:
        with amp():
            out, _ = lstm(x, lengths=lengths) if uses_lengths else lstm(x)
        (out * weight).sum().backward()


def generation_unit(model, tokens: int = 32) -> None:
    """One 4x7 poem's worth of model steps: batch 1, one token at a time, each fed the previous step's
    most likely token (the sampler proper is core.generation.sampler's; this times the model)."""
    token = torch.ones(1, 1, dtype=torch.long, device=next(model.parameters()).device)  # <bos>
    state = None
    with torch.no_grad():
        for _ in range(tokens):
            logits, state = model(token, state=state)
            token = logits[:, -1].argmax(-1, keepdim=True)


def recurrent_inputs(model: PoetryLM, batches) -> list:
    """The embedded batches (inputs to the LSTM) and a fixed weight that ignores padded outputs."""
    torch.manual_seed(1)
    H = model.cfg.hidden_size
    with torch.no_grad():
        embedded = [model.embed(b.inputs) for b in batches]
    return [
        (x.requires_grad_(), b.lengths, torch.randn(*b.inputs.shape, H, device=x.device) * b.mask[..., None])
        for x, b in zip(embedded, batches, strict=True)
    ]


# --- agreement -------------------------------------------------------------------------------------------


def agreement(ours: PoetryLM, ref: ReferenceLM, batch) -> dict:
    """Logits on real positions and every gradient of the masked loss, ours against the reference."""
    ours.eval(), ref.eval()
    grads = {}
    logits = {}
    for side, model in (("ours", ours), ("reference", ref)):
        model.zero_grad(set_to_none=True)
        out, _ = model(batch.inputs, lengths=batch.lengths)
        masked_cross_entropy(out, batch.targets, batch.mask).backward()
        logits[side] = out.detach()[batch.mask]
        grads[side] = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
    ours.train(), ref.train()
    scale = max(1.0, logits["reference"].abs().max().item())
    logit_error = (logits["ours"] - logits["reference"]).abs().max().item() / scale
    grad_error = 0.0
    for name, g in grads["ours"].items():
        expected = grads["reference"][name.replace("bias_l", "bias_ih_l")]
        grad_error = max(
            grad_error, ((g - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
        )
    return {
        "max_logit_error": logit_error,
        "max_grad_rel_error": grad_error,
        "passed": logit_error <= 1e-4 and grad_error <= 1e-3,
        "tolerance": {"logits": 1e-4, "grads": 1e-3},
    }


# --- timing ----------------------------------------------------------------------------------------------


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(tasks: dict, repeats: int, warmup: int, device, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds of each task, the tasks taking turns (order reversed every round), warm-up excluded."""
    times = {name: [] for name in tasks}
    names = list(tasks)
    for round_ in range(warmup + repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            sync(device)
            start = clock()
            tasks[name]()
            sync(device)
            if round_ >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(cfg: BenchConfig, repeats: int, device, clock=time.perf_counter, precision: str = "fp32") -> dict:
    batches, vocab_size, source = load_batches(cfg, device)
    ours, ref = build_pair(cfg, vocab_size, device)
    checked = agreement(ours, ref, batches[0])
    tokens = sum(b.tokens for b in batches)
    positions = sum(b.inputs.numel() for b in batches)
    models = {"ours": (ours, True), "reference": (ref, False)}
    optimizers = {side: torch.optim.Adam(m.parameters(), lr=1e-3) for side, (m, _) in models.items()}
    rec_inputs = recurrent_inputs(ours, batches)
    timed = functools.partial(interleaved, repeats=repeats, warmup=2, device=device, clock=clock)
    amp = functools.partial(autocast, device, precision)

    train = timed(
        {s: lambda s=s: train_unit(models[s][0], optimizers[s], batches, models[s][1], amp) for s in models}
    )
    recurrent = timed(
        {s: lambda s=s: recurrent_unit(models[s][0].lstm, rec_inputs, models[s][1], amp) for s in models}
    )
    for model, _ in models.values():
        model.eval()
    infer = timed({s: lambda s=s: infer_unit(models[s][0], batches, models[s][1], amp) for s in models})
    generation = timed({s: lambda s=s: generation_unit(models[s][0]) for s in models})  # float32
    sides = {
        side: {
            "train_tokens_per_s": tokens / train[side],
            "infer_tokens_per_s": tokens / infer[side],
            "recurrent_train_tokens_per_s": tokens / recurrent[side],
            "generation_ms_per_poem": generation[side] * 1000,
        }
        for side in models
    }
    return {
        "batch_size": cfg.batch_size,
        "embed_size": cfg.embed_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "vocab_size": vocab_size,
        "dropout": ours.cfg.dropout,
        "precision": precision,
        "lengths": source,
        "batches_per_unit": len(batches),
        "tokens_per_unit": tokens,
        "padding_fraction": round(1 - tokens / positions, 4),
        "agreement": checked,
        **sides,
        "train_ratio": sides["ours"]["train_tokens_per_s"] / sides["reference"]["train_tokens_per_s"],
        "infer_ratio": sides["ours"]["infer_tokens_per_s"] / sides["reference"]["infer_tokens_per_s"],
        "recurrent_train_ratio": (
            sides["ours"]["recurrent_train_tokens_per_s"] / sides["reference"]["recurrent_train_tokens_per_s"]
        ),
        "generation_ratio": generation["reference"] / generation["ours"],
    }
