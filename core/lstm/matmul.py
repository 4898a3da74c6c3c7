"""Matrix products x @ w^T (+ bias) for the fused LSTM, in the precision and on the kernels that suit the
machine.

On CPU in float32 they run on oneDNN's GEMM when torch has it (the kernels of PyTorch's built-in recurrent
layers; on some CPUs much faster than the BLAS behind torch.mm, docs/REPORT.md §8). Same float32
arithmetic, only the kernel differs; POEMTUI_ONEDNN=0 turns it off. Under a bfloat16 autocast the operands
are rounded to bf16 and the results come back in float32 (LowPrecision), on oneDNN too where the CPU has
bf16. The recurrent weight is laid out for oneDNN once per layer and pass (weight()), and the operands of
the weight gradients are written where oneDNN reads them (twins): no conversion copies in the loops.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.lstm import native


def autocast_dtype(x) -> torch.dtype | None:
    """bfloat16 under an enclosing bfloat16 autocast of x's device (float32 inputs only), else None."""
    kind = x.device.type
    if x.dtype != torch.float32 or not torch.is_autocast_enabled(kind):
        return None
    return torch.bfloat16 if torch.get_autocast_dtype(kind) == torch.bfloat16 else None


def of_mode(mode: int, w):
    """The products a weight laid out by weight() was made for (mode: theirs)."""
    if mode == LowPrecision.mode:
        return LowPrecision(w.dtype, onednn=w.is_mkldnn)
    return FullPrecision(onednn=mode == 1)


def products(x, mm_dtype: torch.dtype | None, onednn_if: bool = True):
    """The products of one layer's forward or backward: bf16 operands under a bf16 autocast, else x's own
    precision on oneDNN where it works (and onednn_if holds), else torch's."""
    if mm_dtype is not None:
        return LowPrecision(mm_dtype, onednn=onednn_ok(x, mm_dtype) and onednn_if)
    return FullPrecision(onednn=onednn_ok(x) and onednn_if)


class Twins:
    """Matrices handed out with a twin: the same values in the form a kernel takes (oneDNN's own tensor
    over the same memory, or a copy rounded to bf16), found again by identity. A products object holds
    them for its one forward or backward; a layer's backward adopts the inputs operand its forward filled."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, matrix, twin) -> None:
        self._by_id[id(matrix)] = (matrix, twin)  # (holding matrix keeps its id from being reused)

    def of(self, matrix):
        pair = self._by_id.get(id(matrix))
        return pair[1] if pair is not None and pair[0] is matrix else None


@dataclass
class FullPrecision:
    """x @ w^T (+ bias) in the operands' own precision, on oneDNN's kernels or torch's."""

    onednn: bool
    _twins: Twins = field(default_factory=Twins, repr=False, compare=False)  # grads_operand's oneDNN tensors

    @property
    def mode(self) -> int:
        """How core/lstm/csrc/lstm_loops.cpp names these products: 0 torch's, 1 oneDNN's."""
        return 1 if self.onednn else 0

    def weight(self, w, rows: int):
        """w laid out once for oneDNN (rows: the batch size it will see), for the matmuls of every step."""
        return torch.ops.mkldnn._reorder_linear_weight(contiguous(w), rows) if self.onednn else w

    def linear(self, x, w, bias=None):
        """x @ w^T + bias (w may come from weight())."""
        if self.onednn:  # oneDNN wants plain row-major operands
            w = w if w.is_mkldnn else contiguous(w)
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w, bias, "none", [None], "")
        return F.linear(x, w, bias)

    def linear_add(self, x, w, other):
        """other + x @ w^T, written over other (w may come from weight()). On oneDNN the sum is a separate
        pass: its fused "add" makes the product itself slower (core/lstm/csrc/lstm_loops.cpp, "mode 1")."""
        if self.onednn:
            return other.add_(self.linear(x, w))
        return other.addmm_(x, w.t())

    def grads_operand(self, rows: int, cols: int, like):
        """An empty [rows, cols] matrix (like's dtype and device) to be filled and given to linear_grads. On
        oneDNN its memory is a oneDNN tensor's, which that kernel reads as it lies: no conversion copy (at
        the poem configuration, ~40 MB per layer and batch)."""
        view = native.onednn_dense_view() if self.onednn else None  # (onednn: float32 on CPU)
        if view is None:
            return like.new_empty(rows, cols)
        twin = torch.empty(rows, cols, layout=torch._mkldnn)
        matrix = view(twin)
        self._twins.add(matrix, twin)
        return matrix

    def inputs_operand(self, rows: int, cols: int, like):
        """The weight gradients' other operand (the layer's inputs), to be filled: as grads_operand."""
        return self.grads_operand(rows, cols, like)

    def twin_of(self, matrix):
        """The oneDNN tensor whose memory matrix (from grads_operand) is, or None: for another products
        object to adopt() (a layer's forward fills the inputs operand its backward multiplies)."""
        return None if matrix is None else self._twins.of(matrix)

    def adopt(self, matrix, twin) -> None:
        if twin is not None:
            self._twins.add(matrix, twin)

    def rounded_twin(self, matrix) -> None:
        """Full precision: no rounded copy (LowPrecision.rounded_twin)."""
        return None

    @property
    def bias_grad_along(self) -> bool:
        """Whether linear_grads gives the bias gradient too (oneDNN's kernel sums dy as it goes); else the
        caller sums it where dy is computed (the fused LSTM: its backward loop, step by step)."""
        return self.onednn

    def linear_grads(self, dy, x):
        """dy^T @ x, the weight gradient of y = x @ w^T + b, and (bias_grad_along) dy summed over rows."""
        if not self.onednn:
            return dy.t() @ x, None
        return linear_grads_onednn(self._as_onednn(dy), self._as_onednn(x))

    def _as_onednn(self, matrix):
        twin = self._twins.of(matrix)
        return twin if twin is not None else matrix.contiguous().to_mkldnn()


def linear_grads_onednn(dy, x):
    """oneDNN's own backward-weights kernel on oneDNN tensors: no transposed copies of dy and x (the weight
    is only a shape)."""
    weight_like = torch.empty(dy.shape[1], x.shape[1], dtype=dy.dtype)
    return torch.ops.aten.mkldnn_linear_backward_weights(dy, x, weight_like, True)


@dataclass
class LowPrecision:
    """The same products with operands rounded to `dtype` (bfloat16) and results back in the caller's
    precision: what autocast does for a linear layer. The products accumulate in float32 inside the kernel;
    on CPUs with AVX512-BF16 (or AMX, or a GPU) they run at about twice float32's speed."""

    dtype: torch.dtype
    onednn: bool = False  # weight() prepacks for oneDNN's kernel (on CPU: 1.5x faster at one step's size)
    mode = 2  # core/lstm/csrc/lstm_loops.cpp: bf16 operands, w already rounded by weight()
    _twins: Twins = field(default_factory=Twins, repr=False, compare=False)  # rounded_twin's copies

    def weight(self, w, rows: int):
        """w rounded once (and laid out for oneDNN), for the matmuls of every step."""
        w = contiguous(w).to(self.dtype)
        return torch.ops.mkldnn._reorder_linear_weight(w, rows) if self.onednn else w

    def rounded_twin(self, matrix):
        """An empty rounded copy of matrix, for whoever writes matrix to fill as well (the elementwise pass
        that computes it, while the values are in cache); the products then take it instead of rounding."""
        twin = torch.empty_like(matrix, dtype=self.dtype)
        self._twins.add(matrix, twin)
        return twin

    def _rounded(self, x):
        twin = self._twins.of(x)
        return twin if twin is not None else x.to(self.dtype)

    def product(self, x, w):
        """x @ w^T with rounded operands, left in bf16 (w may come from weight())."""
        if w.is_mkldnn:
            return torch.ops.mkldnn._linear_pointwise(
                self._rounded(x).contiguous(), w, None, "none", [None], ""
            )
        return F.linear(self._rounded(x), w.to(self.dtype))

    def linear(self, x, w, bias=None):
        """x @ w^T (+ bias) with rounded operands, returned in x's precision (w may come from weight())."""
        y = self.product(x, w).to(x.dtype)
        return y if bias is None else y.add_(bias)

    def linear_add(self, x, w, other):
        return other.add_(self.linear(x, w))

    def grads_operand(self, rows: int, cols: int, like):
        return like.new_empty(rows, cols)

    def inputs_operand(self, rows: int, cols: int, like):
        """The weight gradients' other operand, already rounded: whoever fills it rounds as it writes."""
        return like.new_empty(rows, cols, dtype=self.dtype)

    def twin_of(self, matrix) -> None:
        return None

    def adopt(self, matrix, twin) -> None:
        pass

    bias_grad_along = False  # (FullPrecision.bias_grad_along)

    def linear_grads(self, dy, x):
        """dy^T @ x with rounded operands, in dy's precision (no bias gradient: bias_grad_along)."""
        return (self._rounded(dy).t() @ self._rounded(x)).to(dy.dtype), None


def contiguous(w):
    """w.contiguous(), for a transposed weight W^T by the compiled tiled copy where it is built (~2x faster
    than torch's strided copy on CPU; core/lstm/csrc/lstm_loops.cpp)."""
    if w.is_contiguous() or w.dim() != 2 or not w.t().is_contiguous() or w.device.type != "cpu":
        return w.contiguous()
    ops = native.lstm_loops()
    return ops.contiguous_transpose(w) if ops is not None else w.contiguous()


def onednn_ok(x, mm_dtype: torch.dtype | None = None) -> bool:
    """Whether x's products (in mm_dtype, else x's own) run on oneDNN: float32 and bfloat16 on CPU."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if mm_dtype is None:
        return onednn_works()
    return mm_dtype == torch.bfloat16 and onednn_works() and onednn_bf16_works()


@functools.cache
def onednn_works() -> bool:
    """oneDNN's linear is an internal torch op: use it only if it is there and gives torch.mm's numbers."""
    if os.environ.get("POEMTUI_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, y = (torch.randn(*shape, generator=gen) for shape in ((5, 7), (12, 7), (5, 12)))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 5)
        prepacked = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [None], "")
        plain = torch.ops.mkldnn._linear_pointwise(y, w.t().contiguous(), None, "none", [None], "")
        d_w, d_b = linear_grads_onednn(y.to_mkldnn(), x.to_mkldnn())
        return (
            torch.allclose(prepacked, x @ w.t(), atol=1e-5)
            and torch.allclose(plain, y @ w, atol=1e-5)
            and torch.allclose(d_w, y.t() @ x, atol=1e-5)
            and torch.allclose(d_b, y.sum(0), atol=1e-5)
        )
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def onednn_bf16_works() -> bool:
    """oneDNN's bf16 linear with a prepacked weight gives F.linear's bf16 numbers (where the CPU has bf16)."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        gen = torch.Generator().manual_seed(0)
        x, w = (torch.randn(*shape, generator=gen).bfloat16() for shape in ((5, 7), (12, 7)))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 5)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [None], "")
        return torch.allclose(y.float(), F.linear(x, w).float(), atol=1e-2)
    except (AttributeError, RuntimeError):
        return False
