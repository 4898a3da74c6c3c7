"""Will it fit? Training's peak memory, estimated from the settings and the batch plan before the model is
built, against the memory the machine has available: a configuration that cannot fit is refused in one
line that gives the estimate and the flag to change, instead of growing until the kernel kills it (a 5 MB
corpus of five very long lines reached 22 GB that way, and no --max-minutes could stop a step that never
ended).

The largest training batch of N target tokens (B rows of T positions) needs, in float32:

- the output layer: logits [N, |V|], their log-softmax and both gradients (LOGIT_COPIES copies);
- the LSTM: per layer and position, the gates, cell and hidden states kept for BPTT and their gradients
  (LSTM_FLOATS_PER_UNIT floats per hidden unit), and the embedding, its dropout and its gradient over every
  position of the padded batch;
- the weights, their gradients and the optimizer's state (OPTIMIZER_SLOTS copies more).

An evaluation batch (64 dev poems) needs the weights and its logits. The constants were measured
(docs/RELIABILITY.md, "Memory"): on five configurations the estimate was 7-21% above the measured
growth of the peak RSS (tests/budget_calibration.py measures one), and refusing a little early is the
safe side.
POEMTUI_MEMORY_AVAILABLE=<bytes, or 12G> replaces what the machine reports (a test, or a machine that
swaps on purpose).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PoemError

GiB = 1 << 30
LOGIT_COPIES = 6  # logits, the masked copy, log-softmax, and the gradients of the three
LSTM_FLOATS_PER_UNIT = {"fused": 10, "autograd": 16}  # per layer, position and hidden unit: gates, c, h
# kept for BPTT and their gradients (torch's autograd keeps more intermediate results than the fused node)
EMBED_COPIES = 3  # the embedding's output, its dropout and its gradient
OPTIMIZER_SLOTS = {
    "sgd": 0,
    "momentum": 1,
    "nesterov": 1,
    "adagrad": 1,
    "adadelta": 2,
    "rmsprop": 1,
    "adam": 2,
    "adamw": 2,
}
EVAL_BATCH = 64  # core.training.perplexity scores poems 64 at a time
EVAL_LOGIT_COPIES = 3  # logits, the masked copy, log-softmax


@dataclass
class Estimate:
    """Peak memory of training, in bytes, by part, and the batch that sets it."""

    parts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    length: int = 0
    vocab: int = 0

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def advice(self, seq_mode: str) -> str:
        """The flag(s) that shrink the largest part."""
        largest = max(self.parts, key=self.parts.get)
        if largest == "weights":
            return "--hidden-size or --embed-size (or --num-layers)"
        if largest == "evaluation":  # dev poems are scored 64 at a time, whatever --batch-size says
            longest = f"{self.length - 1:,}"
            return f"|V| with a higher --min-freq (the dev split's longest poems have {longest} characters)"
        if seq_mode == "poem":
            return f"--batch-size (its longest poems have {self.length - 1:,} characters)"
        return "--batch-size or --seq-len"

    def describe(self) -> str:
        parts = ", ".join(f"{name} {gib(size)}" for name, size in self.parts.items() if size)
        return f"about {gib(self.total)} ({parts})"


def gib(size: float) -> str:
    return f"{size / GiB:,.1f} GiB" if size >= GiB / 10 else f"{size / 2**20:,.0f} MiB"


def estimate(
    cfg, vocab_size: int, train_shapes: list[tuple[int, int, int]], eval_shape: tuple[int, int, int]
):
    """The peak of training with settings `cfg` (a TrainConfig) and |V| = vocab_size, whose batches have
    the shapes `train_shapes` and whose largest evaluation batch has `eval_shape` (each: rows, positions,
    target tokens)."""
    model = cfg.model_config(vocab_size)
    params = sum(math.prod(shape) for shape in model.parameter_shapes().values())
    weights = 4 * params * (2 + OPTIMIZER_SLOTS.get(cfg.optimizer, 2))
    per_unit = LSTM_FLOATS_PER_UNIT.get(model.lstm_impl, 16)
    width = model.hidden_size * model.num_layers * per_unit

    def positions(rows: int, length: int, tokens: int) -> int:
        # the fused LSTM packs the rows (padding costs nothing); the autograd one runs over every position
        return tokens if model.lstm_impl == "fused" else rows * length

    rows, length, tokens = max(train_shapes, key=lambda s: s[2] * vocab_size + s[0] * s[1])
    logits = 4 * tokens * vocab_size * LOGIT_COPIES
    # the embedding (and its dropout) runs over every position, padding included
    activations = (
        4 * positions(rows, length, tokens) * width + 4 * rows * length * model.lstm_input_size * EMBED_COPIES
    )
    e_rows, e_length, e_tokens = eval_shape  # no gradients: logits, their log-softmax, the LSTM's states
    evaluation = (
        4 * e_tokens * vocab_size * EVAL_LOGIT_COPIES + 4 * positions(*eval_shape) * model.hidden_size * 6
    )
    if evaluation > logits + activations:
        return Estimate({"evaluation": evaluation, "weights": weights}, e_rows, e_length, vocab_size)
    return Estimate(
        {"logits": logits, "LSTM activations": activations, "weights": weights}, rows, length, vocab_size
    )


def largest_scoring_batch(lengths: list[int], batch_size: int) -> tuple[int, int, int]:
    """(rows, positions, tokens) of the largest batch core.training.perplexity makes of poems of these
    lengths (characters; each is scored on n + 1 targets)."""
    from core.corpus.buckets import plan_poem_batches

    sizes = [n + 1 for n in lengths]
    plan = plan_poem_batches(sizes, batch_size, seed=0, epoch=0, shuffle=False, bucket=True)
    return max(
        ((len(b), max(sizes[i] for i in b), sum(sizes[i] for i in b)) for b in plan), key=lambda s: s[2]
    )


def check_scoring(model, lengths: list[int], batch_size: int, device=None) -> None:
    """Refuse, in one line, scoring poems of these lengths `batch_size` at a time with `model` (a
    ModelConfig) when its largest batch would not fit (`core.evaluate --batch-size`)."""
    if not lengths:
        return
    rows, length, tokens = largest_scoring_batch(lengths, batch_size)
    params = sum(math.prod(shape) for shape in model.parameter_shapes().values())
    positions = tokens if model.lstm_impl == "fused" else rows * length
    evaluation = 4 * tokens * model.vocab_size * EVAL_LOGIT_COPIES + 4 * positions * model.hidden_size * 6
    est = Estimate({"evaluation": evaluation, "weights": 4 * params}, rows, length, model.vocab_size)
    free = available(device)
    if free is not None and est.total > free:
        raise PoemError(
            f"scoring {rows:,} poems at a time (the longest {length - 1:,} characters, "
            f"|V| {model.vocab_size:,}) needs {est.describe()}, more than the {gib(free)} available: "
            "lower --batch-size"
        )


def _parse_size(text: str) -> int | None:
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What the process's cgroup (v2) still allows, when it sets a limit (a container)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            rel = next((line.split(":", 2)[2].strip() for line in fh if line.startswith("0::")), None)
        if rel is None:
            return None
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, ValueError, StopIteration):
        return None


def available(device=None) -> int | None:
    """Bytes this process can still allocate on `device` (None: unknown, nothing is refused)."""
    text = os.environ.get("POEMTUI_MEMORY_AVAILABLE")
    if text:
        size = _parse_size(text)
        if size is None:
            raise PoemError(f"POEMTUI_MEMORY_AVAILABLE={text!r} is not a size (bytes, or e.g. 12G)")
        return size
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(found) if found else None


def check_fits(est: Estimate, seq_mode: str, device=None) -> None:
    """Refuse, in one line, a configuration whose estimated peak exceeds the memory available."""
    free = available(device)
    if free is None or est.total <= free:
        return
    where = "on the GPU" if device is not None and getattr(device, "type", "cpu") == "cuda" else ""
    batch = "evaluation batch" if "evaluation" in est.parts else "training batch"
    raise PoemError(
        f"the largest {batch} ({est.rows:,} × {est.length:,} positions, |V| {est.vocab:,}) needs "
        f"{est.describe()}, more than the {gib(free)} available{' ' + where if where else ''}: lower "
        f"{est.advice(seq_mode)}"
    )
