"""The fused LSTM layer: one autograd node per layer whose backward is the hand-derived BPTT of
docs/lstm-derivatives.md, its time loops compiled (core.lstm.loops) and its products from core.lstm.matmul.

Everything lives in the packed layout of core.lstm.packing (real steps only, time-major, longest rows first).
"""

from __future__ import annotations

import torch

from core.lstm import matmul
from core.lstm.loops import time_loops
from core.lstm.packing import Packing, final_state

ONEDNN_MIN_STEPS = 8  # fewer steps than this: torch.mm (see FusedLayer.forward)


class FusedLayer(torch.autograd.Function):
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
        hs, cs, tanh_cs = time_loops(xs).forward(
            gates, mm.weight(w_hh, B), h0s, c0s, P.batch_sizes, keep, mm.mode, h0_zero, x_low, bias, z_h
        )

        # Saved the autograd way, so they are freed as soon as backward has run (unless retain_graph).
        # (Not xs: the inputs operand holds what backward needs of it.)
        ctx.save_for_backward(w_ih, w_hh, h0s, c0s, inputs, cs, tanh_cs, gates)
        ctx.packing, ctx.mm_dtype, ctx.inputs_twin = P, mm_dtype, mm.twin_of(inputs)
        h_n = final_state(hs, h0, P)
        c_n = final_state(cs, c0, P) if keep else cs.index_select(0, P.restore)
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
        time_loops(gates).backward(
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
