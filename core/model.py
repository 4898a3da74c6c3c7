"""The poetry language model: embedding -> our LSTM -> dropout -> linear -> logits (softmax in the loss).

Parameter names are a contract (checkpoints, the NumPy model and gradcheck use them):
embedding.weight [V, E]; lstm.weight_ih_l{k} [4H, I], lstm.weight_hh_l{k} [4H, H], lstm.bias_l{k} [4H],
gate order i, f, g, o; head.weight [V, H], head.bias [V].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.lstm import LSTM
from core.lstm.dropout import Dropout
from core.model_config import INIT_SCHEMES, ModelConfig


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto": bfloat16 autocast where the hardware computes it natively (AVX512-BF16/AMX, or a CUDA GPU
    with bf16), float32 elsewhere (emulated bf16 would be slower than float32)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return "bf16" if native else "fp32"


class PoetryLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.tie_weights and cfg.embed_size != cfg.hidden_size:
            raise ValueError("tie_weights needs embed_size == hidden_size")
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        self.lstm = LSTM(cfg.embed_size, cfg.hidden_size, cfg.num_layers, cfg.dropout, impl=cfg.lstm_impl)
        self.drop = Dropout(cfg.dropout)  # torch's dropout, a cheaper mask (core/lstm/dropout.py)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        init_weights(self, cfg.init)

    def forward(self, inputs, lengths=None, state=None, mask=None):
        """inputs [B, T] token ids -> logits [B, T, V] and the LSTM state (h, c), each [L, B, H].

        With `mask` [B, T], only the positions where it is True reach the output layer: logits [N, V] in
        row-major order of the mask. Training and evaluation use this: the largest matmul of the model
        then skips padding, and no [B, T, V] gradient has to be scattered back."""
        x = self.drop(self.embedding(inputs))
        out, state = self.lstm(x, state=state, lengths=lengths)
        if mask is not None:
            out = out[mask]
        return self.head(self.drop(out)), state

    def loss(self, batch, reduction: str = "mean"):
        """Cross-entropy over the real targets of a Batch ("mean" per token, or "sum")."""
        logits, _ = self(batch.inputs, lengths=batch.lengths, mask=batch.mask)
        return token_cross_entropy(logits, batch.targets[batch.mask], reduction)


def token_cross_entropy(logits, targets, reduction: str = "mean"):
    """Cross-entropy of logits [N, V] against targets [N], in float32 whatever the logits' precision."""
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    return total / max(targets.numel(), 1) if reduction == "mean" else total


def masked_cross_entropy(logits, targets, mask, reduction: str = "mean"):
    """Cross-entropy over positions where mask is True; padding never counts (DESIGN.md §4)."""
    return token_cross_entropy(logits[mask], targets[mask], reduction)


# --- initialisation -------------------------------------------------------------------------------------


def _per_gate(weight: torch.Tensor, fn) -> None:
    """Apply an initialiser to each of the four [H, ·] gate blocks separately (i, f, g, o)."""
    for block in weight.data.chunk(4, dim=0):
        fn(block)


def _init_default(model: PoetryLM) -> None:
    """Xavier input weights, orthogonal recurrent weights, forget-gate bias 1 (Jozefowicz et al. 2015).

    Embeddings are N(0, 1), the unit-variance inputs Xavier's scaling assumes: with std 0.1 the gates of
    a 2-layer LSTM barely see the input and training sits on the unigram plateau for hundreds of steps
    (docs/REPORT.md §3). A tied embedding is also the output
    matrix, whose logits must start small: it keeps std 0.1."""
    nn.init.normal_(model.embedding.weight, std=0.1 if model.cfg.tie_weights else 1.0)
    for name, p in model.lstm.named_parameters():
        if name.startswith("weight_ih"):
            _per_gate(p, nn.init.xavier_uniform_)
        elif name.startswith("weight_hh"):
            _per_gate(p, nn.init.orthogonal_)
        else:
            nn.init.zeros_(p)
            hs = p.shape[0] // 4
            p.data[hs : 2 * hs] = 1.0  # forget gate: remember by default
    bound = 1 / math.sqrt(model.cfg.hidden_size)
    if not model.cfg.tie_weights:
        nn.init.uniform_(model.head.weight, -bound, bound)
    nn.init.zeros_(model.head.bias)


def _init_uniform(model: PoetryLM) -> None:
    """PyTorch's default for recurrent layers: every weight and bias uniform in ±1/√H."""
    bound = 1 / math.sqrt(model.cfg.hidden_size)
    nn.init.normal_(model.embedding.weight)
    for name, p in model.named_parameters():
        if not name.startswith("embedding"):
            nn.init.uniform_(p, -bound, bound)


def _init_xavier(model: PoetryLM) -> None:
    """Xavier (Glorot) uniform on every matrix, zero biases."""
    for name, p in model.named_parameters():
        if p.dim() == 2 and not name.startswith("embedding"):
            nn.init.xavier_uniform_(p)
        elif p.dim() == 1:
            nn.init.zeros_(p)
    nn.init.normal_(model.embedding.weight, std=0.1)


def _init_zeros(model: PoetryLM) -> None:
    """Everything zero: every hidden unit computes the same thing and gets the same gradient, forever.

    Kept to show why not (tests/test_numpy_lm.py, `python -m core.experiments init`)."""
    for p in model.parameters():
        nn.init.zeros_(p)


INITIALISERS = {
    "default": _init_default,
    "uniform": _init_uniform,
    "xavier": _init_xavier,
    "zeros": _init_zeros,
}


def init_weights(model: PoetryLM, scheme: str = "default") -> None:
    if scheme not in INITIALISERS:
        raise ValueError(f"unknown init scheme {scheme!r}; choose from {', '.join(INIT_SCHEMES)}")
    INITIALISERS[scheme](model)
