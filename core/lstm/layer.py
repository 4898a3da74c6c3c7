"""Our hand-written LSTM (the assignment's equations), batch first, padding aware.

With z = [h_{t-1}, x_t] and the four gates computed by one matmul (gate order i, f, g, o, as torch's):

    i_t = σ(W_i z + b_i)    f_t = σ(W_f z + b_f)    g_t = C̄_t = tanh(W_C z + b_C)    o_t = σ(W_o z + b_o)
    C_t = f_t ⊙ C_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(C_t)

W = [W_hh | W_ih] is stored as two matrices so that the input half, W_ih x_t + b, is computed for every
time step at once (one big matmul) before the recurrent loop, which then only adds W_hh h_{t-1}.

Two implementations compute the same numbers:
- "autograd": plain torch ops in a Python loop; autograd records every step and derives the backward.
- "fused": one autograd node per layer whose backward is the hand-derived BPTT (see docs/lstm-derivatives.md).

Padding: with `lengths`, row b takes real steps 0 .. lengths[b]-1; afterwards its h and c stop changing and
its outputs are 0, so (h_n, c_n) are the states after each row's last real step.

Precision: under a bfloat16 autocast the fused implementation's matmuls (forward and backward) take bf16
operands while gates, cell states and gradients stay in the inputs' float32 (core.lstm.matmul); otherwise, and
always for "autograd", everything runs in the inputs' own dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.lstm import matmul
from core.lstm.dropout import dropout
from core.lstm.fused import FusedLayer
from core.lstm.packing import Packing, unpack

IMPLS = ("fused", "autograd")


class LSTM(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        impl: str = "fused",
        *,
        locked: bool = False,
        weight_drop: float = 0.0,
    ):
        """dropout: on the inputs of every layer but the first (training only); locked: one mask per
        sequence, the same at every step (variational dropout), instead of one per step; weight_drop:
        DropConnect on each layer's recurrent weights W_hh, one mask per forward pass (AWD-LSTM)."""
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"unknown LSTM impl {impl!r}; choose from {', '.join(IMPLS)}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.impl = dropout, impl
        self.locked, self.weight_drop = locked, weight_drop
        H4 = 4 * hidden_size
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(H4, layer_input)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(H4, hidden_size)))
            self.register_parameter(f"bias_l{k}", nn.Parameter(torch.empty(H4)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default for recurrent layers (uniform ±1/√H); PoetryLM re-initialises the model."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"dropout={self.dropout}, impl={self.impl!r}, locked={self.locked}, "
            f"weight_drop={self.weight_drop}"
        )

    def layer_weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer k's W_ih, W_hh, b as the step uses them: while training, W_hh with DropConnect applied.

        The dropped weight is an ordinary autograd product W_hh ⊙ m / (1 - p), computed once per forward
        pass and used at every step, so both implementations see the same mask (one seed drawn here)
        and W_hh's gradient is m / (1 - p) ⊙ the gradient of the weight the steps used."""
        w_ih, w_hh, b = (getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias"))
        if self.training and self.weight_drop > 0:
            w_hh = dropout(w_hh, self.weight_drop)
        return w_ih, w_hh, b

    def forward(self, x: torch.Tensor, state=None, lengths: torch.Tensor | None = None):
        """x [B, T, I] -> out [B, T, H], (h_n, c_n) each [L, B, H]."""
        B, L, H = x.shape[0], self.num_layers, self.hidden_size
        state_given = state
        if state is None:
            zeros = x.new_zeros(L, B, H)
            state = (zeros, zeros)
        h0, c0 = state
        if x.shape[1] == 0:  # no step at all: nothing changes
            return x.new_zeros(B, 0, H), (h0, c0)
        run = self._forward_fused if self.impl == "fused" else self._forward_autograd
        mm_dtype = matmul.autocast_dtype(x)  # an enclosing bf16 autocast reaches the fused matmuls only
        with torch.autocast(x.device.type, enabled=False):
            out, h_n, c_n = run(x, h0, c0, lengths, mm_dtype, zero_state=state_given is None)
        return out, (torch.stack(h_n), torch.stack(c_n))

    def _between_layers(self, k: int) -> bool:
        return k > 0 and self.dropout > 0 and self.training

    def _forward_autograd(self, x, h0, c0, lengths, mm_dtype=None, zero_state=False):
        """The layers one after the other in the batch's layout (plain ops: mm_dtype, zero_state unused)."""
        B, T = x.shape[:2]
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if self._between_layers(k):
                x = sequence_dropout(x.reshape(B * T, -1), self.dropout, None, B, T, self.locked).view(
                    B, T, -1
                )
            x, (h, c) = _layer_autograd(x, *self.layer_weights(k), h0[k], c0[k], lengths)
            h_n.append(h)
            c_n.append(c)
        return x, h_n, c_n

    def _forward_fused(self, x, h0, c0, lengths, mm_dtype=None, zero_state=False):
        """The layers one after the other in the packed layout (Packing): packed once before the first,
        unpacked once after the last. Under a bf16 autocast (mm_dtype) the matmuls take bf16 operands
        (module docstring, "Precision"). zero_state: h0 is 0, so step 0 has no recurrent product."""
        B, T = x.shape[:2]
        P = Packing.of(lengths, B, T, x.device)
        xs = x.reshape(B * T, -1).index_select(0, P.index)  # the real steps, time-major
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if self._between_layers(k):  # the same units as in the batch's layout (core.lstm.dropout)
                xs = sequence_dropout(xs, self.dropout, P.index, B, T, self.locked)
            xs, h, c = FusedLayer.apply(xs, *self.layer_weights(k), h0[k], c0[k], P, mm_dtype, zero_state)
            h_n.append(h)
            c_n.append(c)
        return unpack(xs, P, B, T), h_n, c_n


def sequence_dropout(x, p: float, positions, B: int, T: int, locked: bool):
    """Dropout over rows of x [N, C] that are (row, step) positions of a [B, T] batch (`positions`: each
    row's flat position b * T + t; None: row r is position r). locked: one mask per sequence, shared by
    its steps (Gal & Ghahramani's variational dropout), else one per step."""
    if positions is None:
        positions = torch.arange(x.shape[0], device=x.device)
    if locked:
        return dropout(x, p, rows=torch.div(positions, T, rounding_mode="floor"), logical_rows=B)
    return dropout(x, p, rows=positions, logical_rows=B * T)


# --- "autograd": the equations as plain torch ops ---------------------------------------------------------


def _layer_autograd(x, w_ih, w_hh, b, h, c, lengths):
    """One layer, step by step; autograd records every op and derives the backward."""
    H, T = w_hh.shape[1], x.shape[1]
    x_proj = F.linear(x, w_ih, b)  # W_ih x_t + b for every t at once: [B, T, 4H]
    real = None if lengths is None else _step_mask(lengths, T, x.device)
    outputs = []
    for t in range(T):
        gates = torch.addmm(x_proj[:, t], h, w_hh.t())  # W z_t + b, all four gates in one matmul
        i = torch.sigmoid(gates[:, :H])
        f = torch.sigmoid(gates[:, H : 2 * H])
        g = torch.tanh(gates[:, 2 * H : 3 * H])
        o = torch.sigmoid(gates[:, 3 * H :])
        c_t = f * c + i * g
        h_t = o * torch.tanh(c_t)
        if real is None:
            h, c = h_t, c_t
            outputs.append(h_t)
        else:  # padded rows keep their state and output 0
            h, c = torch.where(real[:, t], h_t, h), torch.where(real[:, t], c_t, c)
            outputs.append(h_t * real[:, t])
    out = torch.stack(outputs, dim=1) if outputs else x.new_zeros(x.shape[0], 0, H)
    return out, (h, c)


def _step_mask(lengths: torch.Tensor, T: int, device) -> torch.Tensor:
    """[B, T, 1] bool: True where step t is a real step of row b (t < lengths[b])."""
    steps = torch.arange(T, device=device)
    return (steps[None, :] < lengths.to(device)[:, None])[:, :, None]
