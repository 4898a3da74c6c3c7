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
operands while gates, cell states and gradients stay in the inputs' float32 (core.matmul); otherwise, and
always for "autograd", everything runs in the inputs' own dtype.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core import matmul, native
from core.dropout import dropout

IMPLS = ("fused", "autograd")
ONEDNN_MIN_STEPS = 8  # fewer steps than this: torch.mm (see _FusedLayer.forward)


class LSTM(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        impl: str = "fused",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"unknown LSTM impl {impl!r}; choose from {', '.join(IMPLS)}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.impl = dropout, impl
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
            f"dropout={self.dropout}, impl={self.impl!r}"
        )

    def layer_weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"), getattr(self, f"bias_l{k}")

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
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if self._between_layers(k):
                x = dropout(x, self.dropout)
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
            if self._between_layers(k):  # the same units as in the batch's layout (core.dropout)
                xs = dropout(xs, self.dropout, rows=P.index, logical_rows=B * T)
            xs, h, c = _FusedLayer.apply(xs, *self.layer_weights(k), h0[k], c0[k], P, mm_dtype, zero_state)
            h_n.append(h)
            c_n.append(c)
        return _unpack(xs, P, B, T), h_n, c_n


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


# --- "fused": one autograd node per layer, hand-derived BPTT ----------------------------------------------


@dataclass
class Packing:
    """Where each real (row, step) of a padded batch goes in the packed, time-major layout.

    Rows are sorted longest first, so the rows that take step t are the first batch_sizes[t] of them (as
    in a PackedSequence) and step t's rows are one contiguous block of the packed layout, after those of
    steps 0 .. t-1. Only real steps are computed, stored and multiplied: padding costs nothing.
    """

    batch_sizes: list[int]  # how many rows take step t (only steps some row takes)
    index: torch.Tensor  # [N] packed position -> flat position b * T + t in the batch
    order: torch.Tensor  # [B] sorted position -> row of the batch
    restore: torch.Tensor  # [B] row of the batch -> sorted position
    stepping_rows: torch.Tensor | None  # rows of the batch with at least one step (None: all of them)
    last: torch.Tensor  # packed position of the last step of each of those rows

    @classmethod
    def of(cls, lengths: torch.Tensor | None, B: int, T: int, device) -> Packing:
        if lengths is None:
            return _unpadded_packing(B, T, str(device))
        lengths = lengths.to("cpu", torch.long).clamp(0, T)
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        takes_step = torch.arange(T)[:, None] < sorted_lengths[None, :]  # [T, B]: sorted row j takes step t
        batch_sizes = [n for n in takes_step.sum(1).tolist() if n > 0]
        offsets = [0, *itertools.accumulate(batch_sizes)][:-1]
        steps, rows = takes_step.nonzero(as_tuple=True)  # time-major: step by step, rows in sorted order
        starts = torch.tensor([*offsets, 0], dtype=torch.long)  # one spare entry for rows with no step
        restore = torch.empty_like(order)
        restore[order] = torch.arange(B)
        stepping = lengths > 0
        last = starts[lengths - 1] + restore  # row b's last step, at its sorted position within that step
        move = functools.partial(torch.Tensor.to, device=device)
        return cls(
            batch_sizes,
            index=move(order[rows] * T + steps),
            order=move(order),
            restore=move(restore),
            stepping_rows=None if bool(stepping.all()) else move(stepping.nonzero()[:, 0]),
            last=move(last[stepping]),
        )


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached for later calls, which autograd may record (and save the index)
def _unpadded_packing(B: int, T: int, device: str) -> Packing:
    """Every row takes every step (no lengths): the packed layout is the batch, time-major."""
    rows = torch.arange(B, device=device)
    return Packing(
        batch_sizes=[B] * T,
        index=torch.arange(B * T, device=device).view(B, T).t().reshape(-1),
        order=rows,
        restore=rows,
        stepping_rows=None,
        last=rows + (T - 1) * B,
    )


class _FusedLayer(torch.autograd.Function):
    """One layer, xs [N, I], W_ih, W_hh, b, h0, c0 -> hs [N, H], h_n, c_n, as one autograd node.

    forward runs the time loop without autograd and keeps what backward needs: the gates i, f, C̄, o after
    their nonlinearities, every C_t and tanh(C_t), and [x_t, h_{t-1}] of every step (the loop writes h_t
    there as it goes). backward is backpropagation through time written out by hand, one pass over the
    sequence; the weight gradients then take one matmul over all steps.
    Everything lives in the packed layout of `Packing` (real steps only, time-major, longest rows first):
    xs and hs are packed, the states h0, c0, h_n, c_n in the batch's row order.
    """

    @staticmethod
    def forward(ctx, xs, w_ih, w_hh, b, h0, c0, packing: Packing, mm_dtype=None, h0_zero: bool = False):
        P, B = packing, h0.shape[0]
        h0s, c0s = h0.index_select(0, P.order), c0.index_select(0, P.order)
        # oneDNN with a prepacked W_hh pays off over many steps; one step at a time (generation) repacking
        # the weights on every call costs more than the matmul, so short sequences take torch's own.
        mm = matmul.products(xs, mm_dtype, onednn_if=len(P.batch_sizes) >= ONEDNN_MIN_STEPS)
        keep = any(ctx.needs_input_grad)  # a backward will follow (not under no_grad)
        if mm.mode == matmul.LowPrecision.mode:  # W_ih x_t in bf16 as the product left it; the loops add b
            x_low, bias = mm.product(xs, w_ih), b
            gates = xs.new_empty(x_low.shape)
        else:  # W_ih x_t + b, every step at once; step t's gates i, f, C̄, o then overwrite its rows
            x_low, bias = None, None
            gates = mm.linear(xs, w_ih, b)
        # The weight gradients' operand [x_t, h_{t-1}] of every step, in the form their product takes: x_t
        # copied now, h_{t-1} written by the loop as it computes h_t (no gather of hs in backward).
        inputs = z_h = None
        if any(ctx.needs_input_grad[1:4]):
            (N, I), n0 = xs.shape, P.batch_sizes[0] if P.batch_sizes else 0
            inputs = mm.inputs_operand(N, I + w_hh.shape[1], like=xs)
            inputs[:, :I] = xs
            inputs[:n0, I:] = h0s[:n0]
            z_h = inputs[:, I:]
        hs, cs, tanh_cs = _time_loops(xs).forward(
            gates, mm.weight(w_hh, B), h0s, c0s, P.batch_sizes, keep, mm.mode, h0_zero, x_low, bias, z_h
        )

        # Saved the autograd way, so they are freed as soon as backward has run (unless retain_graph).
        # (Not xs: the inputs operand holds what backward needs of it.)
        ctx.save_for_backward(w_ih, w_hh, h0s, c0s, inputs, cs, tanh_cs, gates)
        ctx.packing, ctx.mm_dtype, ctx.inputs_twin = P, mm_dtype, mm.twin_of(inputs)
        h_n = _final_state(hs, h0, P)
        c_n = _final_state(cs, c0, P) if keep else cs.index_select(0, P.restore)
        return hs, h_n, c_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_hs, d_hn, d_cn):
        """BPTT in docs/lstm-derivatives.md's names: δh_t, ε_t = dL/dC_t, δa_t (the pre-activations').
        d_hs: dL/dh_t of every packed step (from the layer above or the loss)."""
        w_ih, w_hh, h0s, c0s, inputs, cs, tanh_cs, gates = ctx.saved_tensors
        P, N, (B, H), I = ctx.packing, gates.shape[0], h0s.shape, w_ih.shape[1]
        mm = matmul.products(gates, ctx.mm_dtype)
        mm.adopt(inputs, ctx.inputs_twin)
        d_hs = d_hs.contiguous()
        # What step t+1 sends back to step t: δh^rec_t and ε_{t+1} ⊙ f_{t+1} (first: the final states' grads)
        dh, dc = d_hn.index_select(0, P.order), d_cn.index_select(0, P.order)
        d_a = mm.grads_operand(N, 4 * H, like=gates)  # δa_t of every step, written by the loop
        d_a_low = mm.rounded_twin(d_a)  # bf16 products: δa_t rounded, also written by the loop
        w_hh_t = mm.weight(w_hh.t(), B)
        need_dh0 = ctx.needs_input_grad[4]  # else the loop skips step 0's product, δh^rec_{-1} = δa_0 W_hh
        # db = Σ_t δa_t: summed by the loop as it goes (a pass of its own over δa costs ~1 ms a layer), unless
        # the weight-gradient kernel computes it along (oneDNN's float32 one)
        d_b = gates.new_zeros(4 * H) if ctx.needs_input_grad[3] and not mm.bias_grad_along else None
        _time_loops(gates).backward(
            d_hs, dh, dc, gates, cs, tanh_cs, c0s, w_hh_t, P.batch_sizes, mm.mode, d_a, d_a_low, need_dh0, d_b
        )

        d_x = d_w_ih = d_w_hh = None
        if ctx.needs_input_grad[0]:  # δx_t = δa_t W_ih, packed
            d_x = mm.linear(d_a, w_ih.t())
        if any(ctx.needs_input_grad[1:4]):
            # dW_ih = Σ_t δa_t^T x_t, dW_hh = Σ_t δa_t^T h_{t-1}, db = Σ_t δa_t: one matmul over all steps
            d_w, d_b_along = mm.linear_grads(d_a, inputs)
            d_b = d_b if d_b is not None else d_b_along
            d_w_ih, d_w_hh = d_w.split([I, H], dim=1)
        d_h0 = dh.index_select(0, P.restore) if need_dh0 else None  # rows back in batch order
        d_c0 = dc.index_select(0, P.restore)
        return d_x, d_w_ih, d_w_hh, d_b, d_h0, d_c0, None, None, None


def compiled_loops(device, dtype):
    """The compiled time loops (torch.ops.poemtui_lstm) the fused LSTM runs for tensors of this device and
    dtype: float32 and float64 on CPU, where they build; else None (GPUs, a bf16 copy of the model for
    generation, no compiler: the Python loops)."""
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return None
    return native.lstm_loops()


def _time_loops(x):
    """The step-by-step loops of _FusedLayer for x: compiled where compiled_loops has them, else Python's.
    Both take and return the same tensors and compute the same numbers (tests/test_native.py)."""
    loops = compiled_loops(x.device, x.dtype)
    return loops if loops is not None else _PythonLoops


class _PythonLoops:
    """The time loops in torch ops, for GPUs and machines without a C++ compiler. `mode` names the matrix
    products (matmul.FullPrecision.mode, matmul.LowPrecision.mode); w_hh is laid out by its weight()."""

    @staticmethod
    def forward(
        gates,
        w_hh,
        h0s,
        c0s,
        batch_sizes,
        keep: bool,
        mode: int,
        h0_zero=False,
        x_low=None,
        bias=None,
        z_h=None,
    ):
        """gates [N, 4H]: W_ih x_t + b of every packed step on entry (or, given x_low, W_ih x_t in bf16, and
        bias: their sum), the gates i, f, C̄, o after (when keep). Returns hs [N, H] and, when keep, every
        C_t and tanh(C_t) [N, H], else each row's last C_t [B, H]. h0_zero: h0s is 0, step 0 has no
        recurrent product to add. z_h [N, H] (if given): each step's rows get h_{t-1} (from the second step
        on), for the weight gradients."""
        if x_low is not None:
            torch.add(x_low, bias, out=gates)
        mm = matmul.of_mode(mode, w_hh)
        (N, H4), B = gates.shape, h0s.shape[0]
        H = H4 // 4
        hs = gates.new_empty(N, H)
        if keep:  # every step's C_t and tanh(C_t), for backward
            cs, tanh_cs, rows = gates.new_empty(N, H), gates.new_empty(N, H), lambda s, n: slice(s, s + n)
        else:  # one row per sequence: its latest C_t (in place), tanh(C_t)
            cs, tanh_cs, rows = c0s.clone(), gates.new_empty(B, H), lambda s, n: slice(0, n)
        h_prev, c_prev, s = h0s, c0s, 0
        for t, n in enumerate(batch_sizes):
            a = gates[s : s + n]  # W_ih x_t + b, plus W_hh h_{t-1} unless h_{t-1} = h0 = 0:
            a = a if s == 0 and h0_zero else mm.linear_add(h_prev[:n], w_hh, a)
            i, f, g, o = _activate(a, out=gates[s : s + n] if keep else a).chunk(4, dim=1)
            c = torch.mul(f, c_prev[:n], out=cs[rows(s, n)]).addcmul_(i, g)  # C_t = f ⊙ C_{t-1} + i ⊙ C̄_t
            tanh_c = _tanh(c, out=tanh_cs[rows(s, n)])
            h = torch.mul(o, tanh_c, out=hs[s : s + n])  # h_t = o_t ⊙ tanh(C_t)
            if z_h is not None and t + 1 < len(batch_sizes):
                n_next = batch_sizes[t + 1]
                z_h[s + n : s + n + n_next] = h[:n_next]
            h_prev, c_prev, s = h, c, s + n
        return hs, cs, tanh_cs

    @staticmethod
    def backward(
        d_hs,
        dh,
        dc,
        gates,
        cs,
        tanh_cs,
        c0s,
        w_hh_t,
        batch_sizes,
        mode: int,
        d_a,
        d_a_low,
        need_dh0=True,
        d_b=None,
    ) -> None:
        """BPTT, last step to first. dh, dc [B, H]: the final states' gradients on entry, h0's (if
        need_dh0; else left undefined) and c0's on exit (in place). Writes δa [N, 4H], the four
        pre-activations' gradients of every step, into d_a, and into d_a_low rounded to bf16 (bf16 products
        only; else None); adds Σ_t δa_t to d_b (if given)."""
        mm = matmul.of_mode(mode, w_hh_t)
        B, H4 = dh.shape[0], gates.shape[1]
        H = H4 // 4
        offsets = [0, *itertools.accumulate(batch_sizes)]
        slope = gates.new_empty(B, H4)  # scratch: the nonlinearities' derivatives at step t
        scratch = gates.new_empty(B, H)
        one = gates.new_ones(())
        for t in reversed(range(len(batch_sizes))):
            n, s = batch_sizes[t], offsets[t]
            gates_t, tanh_c = gates[s : s + n], tanh_cs[s : s + n]
            i, f, g, o = gates_t.chunk(4, dim=1)
            c_prev = c0s[:n] if t == 0 else cs[offsets[t - 1] : offsets[t - 1] + n]
            # δh_t = dL/dout_t + δh^rec_t
            dh_t = dh[:n].add_(d_hs[s : s + n])
            # ε_t = δh_t ⊙ o_t ⊙ (1 - tanh²(C_t)) + ε_{t+1} ⊙ f_{t+1}
            eps = dc[:n].addcmul_(dh_t, torch.addcmul(one, tanh_c, tanh_c, value=-1, out=scratch[:n]).mul_(o))
            d_i, d_f, d_g, d_o = d_a[s : s + n].chunk(4, dim=1)
            torch.mul(eps, g, out=d_i)  # δi_t = ε_t ⊙ C̄_t
            torch.mul(eps, c_prev, out=d_f)  # δf_t = ε_t ⊙ C_{t-1}
            torch.mul(eps, i, out=d_g)  # δC̄_t = ε_t ⊙ i_t
            torch.mul(dh_t, tanh_c, out=d_o)  # δo_t = δh_t ⊙ tanh(C_t)
            # δa_t = δgate ⊙ σ' = δgate ⊙ σ(1 - σ) for i, f, o, and δC̄_t ⊙ (1 - C̄_t²) for the candidate
            sigma = torch.addcmul(gates_t, gates_t, gates_t, value=-1, out=slope[:n])
            torch.addcmul(one, g, g, value=-1, out=sigma[:, 2 * H : 3 * H])
            d_a[s : s + n].mul_(sigma)
            eps.mul_(f)  # ε_t ⊙ f_t, for step t-1
            if d_b is not None:
                d_b += d_a[s : s + n].sum(0)
            d_a_t = (
                d_a[s : s + n] if d_a_low is None else d_a_low[s : s + n].copy_(d_a[s : s + n])
            )  # (rounded)
            if t > 0 or need_dh0:
                dh[:n] = mm.linear(d_a_t, w_hh_t)  # δh^rec_{t-1} = δa_t W_hh


def _unpack(packed, P: Packing, B: int, T: int):
    """Packed rows back to the batch's [B, T, ·] layout, 0 at padded steps."""
    full = packed.new_empty if packed.shape[0] == B * T else packed.new_zeros  # no padding: nothing to zero
    return full(B * T, packed.shape[1]).index_copy_(0, P.index, packed).view(B, T, -1)


def _activate(a, out):
    """The gates from their pre-activations a = [a_i, a_f, a_C, a_o]: i, f, o = σ(a), C̄ = tanh(a) = 2σ(2a) - 1
    (one σ over all four; see _tanh). Written to out, which may be a itself."""
    H = a.shape[1] // 4
    a[:, 2 * H : 3 * H].mul_(2)
    gates = torch.sigmoid(a, out=out)
    gates[:, 2 * H : 3 * H].mul_(2).sub_(1)
    return gates


def _tanh(x, out):
    """tanh(x) = 2σ(2x) - 1, into out. Cheap passes: torch.tanh on CPU goes through the vector math library,
    which on some CPUs (AMD) takes a generic path 5x slower than σ. Absolute error ~1e-7 in float32."""
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


def _final_state(packed, initial, P: Packing):
    """Each row's state after its last real step (its initial state if it has none), in batch order."""
    if P.stepping_rows is None:
        return packed.index_select(0, P.last)
    final = initial.clone()
    final[P.stepping_rows] = packed.index_select(0, P.last)
    return final
