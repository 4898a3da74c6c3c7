"""The step-by-step time loops of the fused LSTM layer: compiled (core/lstm/csrc/lstm_loops.cpp, built by
core.lstm.native) where they build, else the same loops in torch ops (GPUs, no compiler,
POEMTUI_NATIVE=0). Both take and return the same tensors and compute the same numbers
(tests/test_native.py); core.lstm.fused calls whichever `time_loops` picks.
"""

from __future__ import annotations

import itertools

import torch

from core.lstm import matmul, native


def compiled_loops(device, dtype):
    """The compiled time loops (torch.ops.poemtui_lstm) the fused LSTM runs for tensors of this device and
    dtype: float32 and float64 on CPU, where they build; else None (GPUs, a bf16 copy of the model for
    generation, no compiler: the Python loops)."""
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.float64):
        return None
    return native.lstm_loops()


def time_loops(x):
    """The step-by-step loops of _FusedLayer for x: compiled where compiled_loops has them, else Python's.
    Both take and return the same tensors and compute the same numbers (tests/test_native.py)."""
    loops = compiled_loops(x.device, x.dtype)
    return loops if loops is not None else PythonLoops


class PythonLoops:
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
            i, f, g, o = activate(a, out=gates[s : s + n] if keep else a).chunk(4, dim=1)
            c = torch.mul(f, c_prev[:n], out=cs[rows(s, n)]).addcmul_(i, g)  # C_t = f ⊙ C_{t-1} + i ⊙ C̄_t
            tanh_c = tanh(c, out=tanh_cs[rows(s, n)])
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


def activate(a, out):
    """The gates from their pre-activations a = [a_i, a_f, a_C, a_o]: i, f, o = σ(a), C̄ = tanh(a) = 2σ(2a) - 1
    (one σ over all four; see tanh). Written to out, which may be a itself."""
    H = a.shape[1] // 4
    a[:, 2 * H : 3 * H].mul_(2)
    gates = torch.sigmoid(a, out=out)
    gates[:, 2 * H : 3 * H].mul_(2).sub_(1)
    return gates


def tanh(x, out):
    """tanh(x) = 2σ(2x) - 1, into out. Cheap passes: torch.tanh on CPU goes through the vector math library,
    which on some CPUs (AMD) takes a generic path 5x slower than σ. Absolute error ~1e-7 in float32."""
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)
