"""Dropout for the model and between the LSTM's layers: torch's semantics (inverted dropout, off in eval),
torch's random state, a mask that depends on each unit's logical position only.

On CPU in float32/float64, where core/lstm/csrc/dropout.cpp builds, the mask comes from a counter-based
generator (Philox, as on GPUs) keyed by a seed drawn from torch's default generator: ~50x cheaper than
torch's bernoulli_ here (a third of a millisecond instead of 9 for one [64, 49, 512] activation, three per
training step), no mask is stored (backward regenerates it), and `torch.manual_seed` or a checkpoint's saved
random state reproduce it. Elsewhere (GPUs, no compiler) torch's F.dropout draws it.

`rows` gives each row of a [R, C] input its logical row id (the fused LSTM's packed rows -> their flat
(b, t) position in the batch): the unit at (row id, column) is dropped or kept the same way whichever layout
the rows come in, so the packed and the batch-layout LSTM drop the same units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.lstm import native


def dropout(x: torch.Tensor, p: float, training: bool = True, rows=None, logical_rows: int | None = None):
    """x with each unit zeroed with probability p and the rest scaled by 1/(1-p) (training only).

    rows: [R] logical row ids of x viewed as [R, x.shape[-1]] (None: row r is r); logical_rows: how many
    logical rows there are (needed with rows where the mask is drawn by torch)."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0
    ops = _kernel(x)
    if ops is not None:
        return _PhiloxDropout.apply(x, p, rows, ops)
    if rows is None:
        return F.dropout(x, p, training=True)
    # torch's generator: draw the mask in the logical layout, then take the rows x holds
    C = x.shape[-1]
    mask = F.dropout(x.new_ones(logical_rows, C), p, training=True).index_select(0, rows)
    return x * mask.view(x.shape)


class Dropout(nn.Module):
    """nn.Dropout's place in a model, with core.lstm.dropout's mask."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        return dropout(x, self.p, self.training)


def _kernel(x):
    """torch.ops.poemtui_lstm (dropout.cpp is built with the loops) for x, or None: torch's mask."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return None
    return native.lstm_loops()


def draw_seed() -> int:
    """64 random bits from torch's default generator (so its seed and saved state govern the masks)."""
    return int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))


class _PhiloxDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, rows, ops):
        ctx.p, ctx.rows, ctx.ops, ctx.seed = p, rows, ops, draw_seed()
        C = x.shape[-1]
        return ops.dropout(x.reshape(-1, C).contiguous(), rows, p, ctx.seed).view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        """The same mask, regenerated from the same seed: grad ⊙ keep / (1 - p)."""
        C = grad.shape[-1]
        d_x = ctx.ops.dropout(grad.reshape(-1, C).contiguous(), ctx.rows, ctx.p, ctx.seed).view(grad.shape)
        return d_x, None, None, None
