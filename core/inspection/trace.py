"""Inside the LSTM, step by step: every gate and cell state of a poem, and how far back a loss reaches.

    trace = trace_poem(model, ids)                        # ids: <bos> c1 … cn, one poem
    trace.gates[k]["f"][t]                                # layer k's forget gate after reading ids[t]: [H]
    norms = bptt_norms(model, trace, target_step)         # ‖∂L/∂h_t‖ for every t, every layer

The fused LSTM keeps its gates inside its C++ time loop, so `step_states` runs the same weights through the
assignment's equations (the module docstring of core.lstm.layer; docs/lstm-derivatives.md (1)-(7)) one step
at a time; tests/test_inspect.py checks that its outputs equal the fused model's. `bptt_norms` is Part 1's
backward written out (docs/lstm-derivatives.md §5, equations (27)-(31) and (37)), for one loss, the
prediction of one character: δh_t = (direct part at the head) + W^hᵀ δa_{t+1}, ε_t = δh_t ⊙ o_t ⊙
(1 - tanh² C_t) + ε_{t+1} ⊙ f_{t+1}. Its top layer is checked against autograd (`autograd_norms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.model_config import PROSODY_KINDS

GATES = ("i", "f", "g", "o", "c", "h")  # per step: input, forget gates, candidate C̄, output gate, C_t, h_t


@dataclass
class Trace:
    """One pass over a batch of sequences: per layer, each of GATES as [B, T, H]; logits [B, T, V]."""

    ids: torch.Tensor
    gates: list[dict[str, torch.Tensor]]
    logits: torch.Tensor
    top_steps: list[torch.Tensor]  # the top layer's h_t, one graph node per step (for autograd's check)


def lstm_input(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the first LSTM layer reads (the embedding, with the prosody features next to it), and the
    prosody head's class rows (None without prosody): PoetryLM.forward's first half, in eval mode."""
    x = model.embedding(ids)
    if model.prosody is None:
        return x, None
    features, classes, _ = model.prosody(ids, None, None)
    return torch.cat([x, features.to(x.dtype)], dim=-1), classes


def head(model, out: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    """Logits from the top layer's outputs: PoetryLM.forward's second half, in eval mode."""
    if model.project is not None:
        out = model.project(out)
    if model.prosody is None:
        return model.head(out)
    out = torch.cat([out, model.prosody.head(out)], dim=-1)
    weight = torch.cat([model.head.weight, classes.to(model.head.weight.dtype)], dim=1)
    return F.linear(out, weight, model.head.bias)


def step_states(model, ids: torch.Tensor) -> Trace:
    """Every layer's gates, cell and hidden states at every step of ids [B, T] (zero initial state; rows of
    different lengths may be padded at the end: a step never sees a later one)."""
    x, classes = lstm_input(model, ids)
    B, T = ids.shape
    layers: list[dict[str, torch.Tensor]] = []
    steps: list[torch.Tensor] = []
    for k in range(model.cfg.num_layers):
        w_ih, w_hh, b = (getattr(model.lstm, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias"))
        H = w_hh.shape[1]
        pre = F.linear(x, w_ih, b)  # W_ih x_t + b for every t
        h = c = x.new_zeros(B, H)
        kept: dict[str, list[torch.Tensor]] = {name: [] for name in GATES}
        for t in range(T):
            a = pre[:, t] + h @ w_hh.t()  # (1) the four pre-activations
            i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])  # (3), (2)
            g, o = torch.tanh(a[:, 2 * H : 3 * H]), torch.sigmoid(a[:, 3 * H :])  # (4), (6)
            c = f * c + i * g  # (5)
            h = o * torch.tanh(c)  # (7)
            for name, value in zip(GATES, (i, f, g, o, c, h), strict=True):
                kept[name].append(value)
        steps = kept["h"]
        layers.append({name: torch.stack(values, dim=1) for name, values in kept.items()})
        x = layers[-1]["h"]
    return Trace(ids=ids, gates=layers, logits=head(model, x, classes), top_steps=steps)


def trace_poem(model, ids: list[int] | torch.Tensor, *, grad: bool = False) -> Trace:
    """step_states for one sequence (batch of one), with autograd's graph kept when `grad`."""
    ids = torch.as_tensor(ids, dtype=torch.long, device=model.embedding.weight.device).reshape(1, -1)
    with torch.set_grad_enabled(grad):
        return step_states(model, ids)


def bptt_norms(model, trace: Trace, step: int, target: int) -> list[list[float]]:
    """‖∂L/∂h_t‖ for t = 0 … step and every layer (bottom first), where L = -log p(target | ids[:step+1]) is
    the loss of the prediction made at `step`: Part 1's backward (module docstring), on one sequence."""
    gates = [{k: v[0].detach() for k, v in layer.items()} for layer in trace.gates]
    top = gates[-1]["h"][step].clone().requires_grad_(True)
    with torch.enable_grad():  # (27) the direct part: through the head only, at the one position scored
        classes = None
        if model.prosody is not None:
            classes = model.prosody.table[:, PROSODY_KINDS:]
        logits = head(model, top[None], classes)[0]
        loss = F.cross_entropy(logits[None].to(top.dtype), torch.tensor([target], device=top.device))
        (direct,) = torch.autograd.grad(loss, top)
    T, H = step + 1, top.shape[0]
    d_out = top.new_zeros(T, H)
    d_out[step] = direct
    norms: list[list[float]] = []
    for k in reversed(range(len(gates))):
        g = gates[k]
        w_ih, w_hh = (getattr(model.lstm, f"{name}_l{k}").detach() for name in ("weight_ih", "weight_hh"))
        dh_next, dc_next = top.new_zeros(H), top.new_zeros(H)
        layer_norms = [0.0] * T
        d_x = top.new_zeros(T, w_ih.shape[1])
        for t in reversed(range(T)):
            i, f, c_bar, o, tanh_c = g["i"][t], g["f"][t], g["g"][t], g["o"][t], torch.tanh(g["c"][t])
            c_prev = g["c"][t - 1] if t > 0 else torch.zeros_like(tanh_c)
            dh = d_out[t] + dh_next  # (37) δh_t = direct + recurrent
            layer_norms[t] = float(torch.linalg.vector_norm(dh))
            dc = dh * o * (1 - tanh_c**2) + dc_next  # (28) ε_t
            da = torch.cat(
                [
                    dc * c_bar * i * (1 - i),  # (29)-(30) δi_t
                    dc * c_prev * f * (1 - f),  # δf_t
                    dc * i * (1 - c_bar**2),  # δC̄_t
                    dh * tanh_c * o * (1 - o),  # δo_t
                ]
            )
            dh_next, dc_next = da @ w_hh, dc * f  # (31) W^hᵀ δa_t; (28) ε_t ⊙ f_t
            d_x[t] = da @ w_ih  # (31)/(35): to the layer below
        norms.append(layer_norms)
        d_out = d_x
    return list(reversed(norms))


def autograd_norms(model, ids: torch.Tensor | list[int], step: int, target: int) -> list[float]:
    """The top layer's ‖∂L/∂h_t‖ by autograd (retain_grad on each step's h_t), for checking bptt_norms."""
    trace = trace_poem(model, list(ids)[: step + 1], grad=True)
    for h in trace.top_steps:
        h.retain_grad()
    logits = trace.logits[0, step]
    loss = F.cross_entropy(logits[None], torch.tensor([target], device=logits.device))
    loss.backward()
    return [float(torch.linalg.vector_norm(h.grad)) if h.grad is not None else 0.0 for h in trace.top_steps]
