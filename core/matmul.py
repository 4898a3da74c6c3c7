"""Matrix products x @ w^T (+ bias) for the fused LSTM and the output layer, in the precision and on the
kernels that suit the machine.

On CPU in float32 they run on oneDNN's GEMM when torch has it (the kernels of PyTorch's built-in recurrent
layers; on some CPUs, e.g. AMD with AVX-512, 2-4x faster than the BLAS behind torch.mm). Same float32
arithmetic, only the kernel differs; POEMTUI_ONEDNN=0 turns it off. Under a bfloat16 autocast the operands
are rounded to bf16 and the results come back in float32 (LowPrecision).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def autocast_dtype(x) -> torch.dtype | None:
    """bfloat16 under an enclosing bfloat16 autocast of x's device (float32 inputs only), else None."""
    kind = x.device.type
    if x.dtype != torch.float32 or not torch.is_autocast_enabled(kind):
        return None
    return torch.bfloat16 if torch.get_autocast_dtype(kind) == torch.bfloat16 else None


def of_mode(mode: int, w):
    return LowPrecision(w.dtype) if mode == LowPrecision.mode else FullPrecision(onednn=mode == 1)


def products(x, mm_dtype: torch.dtype | None, onednn_if: bool = True):
    """The products of one layer's forward or backward: bf16 operands under a bf16 autocast, else x's own
    precision on oneDNN where it works (and onednn_if holds), else torch's."""
    if mm_dtype is not None:
        return LowPrecision(mm_dtype)
    return FullPrecision(onednn=onednn_ok(x) and onednn_if)


@dataclass
class FullPrecision:
    """x @ w^T (+ bias) in the operands' own precision, on oneDNN's kernels or torch's."""

    onednn: bool

    @property
    def mode(self) -> int:
        """How core/csrc/lstm_loops.cpp names these products: 0 torch's, 1 oneDNN's."""
        return 1 if self.onednn else 0

    def weight(self, w, rows: int):
        """w laid out once for oneDNN (rows: the batch size it will see), for the matmuls of every step."""
        return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), rows) if self.onednn else w

    def linear(self, x, w, bias=None):
        """x @ w^T + bias (w may come from weight())."""
        if self.onednn:  # oneDNN wants plain row-major operands
            w = w if w.is_mkldnn else w.contiguous()
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w, bias, "none", [None], "")
        return F.linear(x, w, bias)

    def linear_add(self, x, w, other):
        """other + x @ w^T, written over other (w may come from weight())."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, w, None, "add")
        return other.addmm_(x, w.t())

    def linear_grads(self, dy, x):
        """dy^T @ x and dy summed over rows: the weight and bias gradients of y = x @ w^T + b."""
        return linear_grads_onednn(dy, x) if self.onednn else (dy.t() @ x, dy.sum(0))


def linear_grads_onednn(dy, x):
    """oneDNN's own backward-weights kernel: no transposed copies of dy and x (the weight is only a shape)."""
    weight_like = dy.new_empty(dy.shape[1], x.shape[1])
    return torch.ops.aten.mkldnn_linear_backward_weights(dy.to_mkldnn(), x.to_mkldnn(), weight_like, True)


@dataclass
class LowPrecision:
    """The same products with operands rounded to `dtype` (bfloat16) and results back in the caller's
    precision: what autocast does for a linear layer. The products accumulate in float32 inside the kernel;
    on CPUs with AVX512-BF16 (or AMX, or a GPU) they run at about twice float32's speed."""

    dtype: torch.dtype
    mode = 2  # core/csrc/lstm_loops.cpp: bf16 operands, w already rounded by weight()

    def weight(self, w, rows: int):
        """w rounded once, for the matmuls of every step."""
        return w.to(self.dtype).contiguous()

    def linear(self, x, w, bias=None):
        """x @ w^T (+ bias) with rounded operands, returned in x's precision (w may come from weight())."""
        y = F.linear(x.to(self.dtype), w.to(self.dtype)).to(x.dtype)
        return y if bias is None else y.add_(bias)

    def linear_add(self, x, w, other):
        return other.add_(self.linear(x, w))

    def linear_grads(self, dy, x):
        """dy^T @ x with rounded operands, and dy summed over rows in full precision."""
        return (dy.to(self.dtype).t() @ x.to(self.dtype)).to(dy.dtype), dy.sum(0)


def onednn_ok(x) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and onednn_works()


@functools.cache
def onednn_works() -> bool:
    """oneDNN's linear is an internal torch op: use it only if it is there and gives torch.mm's numbers."""
    if os.environ.get("POEMTUI_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, y = (torch.randn(*shape, generator=gen) for shape in ((5, 7), (12, 7), (5, 12)))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 5)
        added = torch.ops.mkldnn._linear_pointwise.binary(x, y, packed, None, "add")
        plain = torch.ops.mkldnn._linear_pointwise(y, w.t().contiguous(), None, "none", [None], "")
        d_w, d_b = linear_grads_onednn(y, x)
        return (
            torch.allclose(added, y + x @ w.t(), atol=1e-5)
            and torch.allclose(plain, y @ w, atol=1e-5)
            and torch.allclose(d_w, y.t() @ x, atol=1e-5)
            and torch.allclose(d_b, y.sum(0), atol=1e-5)
        )
    except (AttributeError, RuntimeError):
        return False
