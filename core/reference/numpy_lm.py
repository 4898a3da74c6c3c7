"""The poetry language model in NumPy, with the backward pass written out by hand (Part 1 of the assignment).

Same model as core.model.PoetryLM: embedding -> dropout -> multi-layer LSTM (dropout between layers) ->
dropout -> linear head -> softmax cross-entropy with temperature, over the real (unpadded) targets only.
`forward` keeps every activation BPTT needs; `backward` applies the formulas of docs/lstm-derivatives.md,
in the order of its step-by-step table (section 5), and the equation numbers, written (n), are cited next to
the code that implements them. No torch in here:
core.gradcheck proves these gradients against torch autograd.

Parameters use the torch names, so weights copy across both ways: `embedding.weight` [V, D],
`lstm.weight_ih_l{k}` [4H, D_k], `lstm.weight_hh_l{k}` [4H, H], `lstm.bias_l{k}` [4H], `head.weight` [V, H],
`head.bias` [V]. Along the 4H axis the gate blocks are i, f, g, o (torch's order); the document's W_f, W_i,
W_C, W_o are the blocks f, i, g, o with the recurrent and input columns side by side (doc section 7):

    W_i = [weight_hh[0:H]   | weight_ih[0:H]  ]      b_i = bias[0:H]
    W_f = [weight_hh[H:2H]  | weight_ih[H:2H] ]      b_f = bias[H:2H]
    W_C = [weight_hh[2H:3H] | weight_ih[2H:3H]]      b_C = bias[2H:3H]      (g = C̄)
    W_o = [weight_hh[3H:4H] | weight_ih[3H:4H]]      b_o = bias[3H:4H]

Arrays inside are time-major ([T, B, ...]) so that each step reads contiguous memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMBEDDING = "embedding.weight"
HEAD_W = "head.weight"
HEAD_B = "head.bias"


def weight_ih(k: int) -> str:
    return f"lstm.weight_ih_l{k}"


def weight_hh(k: int) -> str:
    return f"lstm.weight_hh_l{k}"


def bias(k: int) -> str:
    return f"lstm.bias_l{k}"


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2: the same function, and it never overflows in exp."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _to_numpy(value, dtype) -> np.ndarray:
    """A torch tensor (on any device, with or without grad) or an array -> a contiguous NumPy copy."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=dtype, copy=True, order="C")


@dataclass
class LayerCache:
    """What one LSTM layer's BPTT needs from its forward pass (doc section 5: "what every step keeps")."""

    x: np.ndarray  # [T, B, D] layer input (after dropout)
    h_prev: np.ndarray  # [T, B, H] h_{t-1} as fed to step t (frozen rows keep their last state)
    c_prev: np.ndarray  # [T, B, H] C_{t-1}
    gates: np.ndarray  # [T, B, 4H] i, f, g, o after their nonlinearities
    tanh_c: np.ndarray  # [T, B, H] tanh(C_t)


@dataclass
class Cache:
    """Everything `backward` needs, returned by `forward`."""

    inputs: np.ndarray  # [T, B] token ids
    active: np.ndarray  # [T, B, 1] bool: step t is a real step of row b (t < lengths[b])
    layers: list[LayerCache]
    drop_masks: list[np.ndarray | None]  # inverted-dropout masks: embedding, between layers, before head
    head_input: np.ndarray  # [N, H] last layer's output at the counted positions (after dropout)
    probs: np.ndarray  # [N, V] softmax(logits / τ), rows in the order of torch's logits[mask]
    target_ids: np.ndarray  # [N]
    positions: tuple[np.ndarray, np.ndarray]  # (t, b) of the N counted positions
    tokens: int  # N, the number of counted targets
    loss_sum: np.floating  # Σ ℓ over the N targets (a NumPy scalar: longdouble stays longdouble)
    temperature: float


class NumpyLM:
    """The language model in NumPy: `forward` -> (loss, cache), `backward(cache)` -> gradients by name."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        num_layers: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ):
        if num_layers is None:
            num_layers = sum(1 for name in params if name.startswith("lstm.weight_ih_l"))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_layers = num_layers
        self.dropout = dropout
        self.tie_weights = tie_weights
        self.params = {k: v for k, v in params.items() if not (tie_weights and k == HEAD_W)}
        missing = [name for name in self.parameter_names() if name not in self.params]
        if missing:
            raise ValueError(f"missing parameters: {', '.join(missing)}")
        self.vocab_size, self.embed_size = self.params[EMBEDDING].shape
        self.hidden_size = self.params[weight_hh(0)].shape[1]

    # --- construction and export -----------------------------------------------------------------------

    def parameter_names(self) -> list[str]:
        """Trainable parameters, in torch's named_parameters() order (a tied head is not listed twice)."""
        names = [EMBEDDING]
        for k in range(self.num_layers):
            names += [weight_ih(k), weight_hh(k), bias(k)]
        if not self.tie_weights:
            names.append(HEAD_W)
        names.append(HEAD_B)
        return names

    @classmethod
    def from_torch_state(
        cls, state_dict, *, dropout: float = 0.0, tie_weights: bool = False, dtype=np.float32
    ) -> NumpyLM:
        """From PoetryLM.state_dict() (tensors) or any mapping name -> array with the same names."""
        params = {name: _to_numpy(value, dtype) for name, value in state_dict.items()}
        return cls(params, dropout=dropout, tie_weights=tie_weights)

    def to_state_dict(self) -> dict[str, np.ndarray]:
        """name -> array with PoetryLM's state_dict names (a tied head.weight appears, as in torch)."""
        state = dict(self.params)
        if self.tie_weights:
            state[HEAD_W] = self.params[EMBEDDING]
        return state

    @property
    def head_weight(self) -> np.ndarray:
        return self.params[EMBEDDING] if self.tie_weights else self.params[HEAD_W]

    # --- forward ---------------------------------------------------------------------------------------

    def forward(
        self,
        inputs,
        targets,
        mask,
        lengths=None,
        *,
        train: bool = False,
        rng: np.random.Generator | None = None,
        temperature: float = 1.0,
    ):
        """Mean cross-entropy over the targets where mask is True, and the cache for `backward`.

        inputs, targets: int [B, T]; mask: bool [B, T]; lengths: int [B] (default: mask.sum(1)); rows stop
        changing at t >= lengths[b] and emit zeros there, as core.lstm does. With train=True and dropout > 0,
        inverted-dropout masks are drawn from `rng` in a fixed order (embedding, layers, head).
        Returns (loss, cache): loss = cache.loss_sum / cache.tokens, NumPy scalars of the weights' dtype.
        """
        inputs = np.asarray(inputs).T  # [T, B]
        targets = np.asarray(targets).T
        mask = np.asarray(mask, dtype=bool).T
        lengths = mask.sum(axis=0) if lengths is None else np.asarray(lengths)
        steps, _ = inputs.shape
        active = (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]  # [T, B, 1]
        use_dropout = train and self.dropout > 0.0
        if use_dropout and rng is None:
            raise ValueError("train=True with dropout needs an rng (numpy.random.Generator)")

        drop_masks: list[np.ndarray | None] = []
        x = self.params[EMBEDDING][inputs]  # (34) r_t = E[s_t], a row lookup; x_t = r̃_t after dropout (36)
        x = self._dropout(x, use_dropout, rng, drop_masks)
        layers = []
        for k in range(self.num_layers):
            out, layer_cache = self._lstm_layer(k, x, active)
            layers.append(layer_cache)
            x = self._dropout(out, use_dropout, rng, drop_masks)  # between layers, and before the head

        b_idx, t_idx = np.nonzero(mask.T)  # counted positions in batch-major order, as torch's logits[mask]
        head_input = x[t_idx, b_idx]  # [N, H]: the head only runs where a target counts
        logits = head_input @ self.head_weight.T + self.params[HEAD_B]  # (21)
        probs, loss_sum = _softmax_cross_entropy(logits, targets[t_idx, b_idx], temperature)  # (22)-(23)
        tokens = len(t_idx)
        cache = Cache(
            inputs=inputs,
            active=active,
            layers=layers,
            drop_masks=drop_masks,
            head_input=head_input,
            probs=probs,
            target_ids=targets[t_idx, b_idx],
            positions=(t_idx, b_idx),
            tokens=tokens,
            loss_sum=loss_sum,
            temperature=temperature,
        )
        return loss_sum / max(tokens, 1), cache

    def _dropout(self, x, use_dropout, rng, masks):
        """Inverted dropout: keep with probability 1-p and scale by 1/(1-p), so eval needs no rescaling."""
        if not use_dropout:
            masks.append(None)
            return x
        keep = (rng.random(x.shape) >= self.dropout).astype(x.dtype) / (1.0 - self.dropout)
        masks.append(keep)
        return x * keep

    def _lstm_layer(self, k: int, x: np.ndarray, active: np.ndarray):
        """One layer over all steps: equations (1)-(7), rows past their length frozen (38)."""
        w_ih, w_hh, b = self.params[weight_ih(k)], self.params[weight_hh(k)], self.params[bias(k)]
        steps, batch, _ = x.shape
        hs = self.hidden_size
        # The input half of W z + b for every step in one matmul: [T, B, 4H].
        pre_x = (x.reshape(steps * batch, -1) @ w_ih.T + b).reshape(steps, batch, 4 * hs)
        gates = np.empty((steps, batch, 4 * hs), dtype=x.dtype)
        h_prev = np.empty((steps, batch, hs), dtype=x.dtype)
        c_prev = np.empty((steps, batch, hs), dtype=x.dtype)
        tanh_c = np.empty((steps, batch, hs), dtype=x.dtype)
        out = np.zeros((steps, batch, hs), dtype=x.dtype)
        h = np.zeros((batch, hs), dtype=x.dtype)
        c = np.zeros((batch, hs), dtype=x.dtype)
        for t in range(steps):
            h_prev[t], c_prev[t] = h, c
            a = pre_x[t] + h @ w_hh.T  # (1) the four pre-activations W_• z_t + b_•, z_t = [h_{t-1}, x_t]
            g_t = gates[t]
            g_t[:, : 2 * hs] = sigmoid(a[:, : 2 * hs])  # (3) i_t, (2) f_t
            g_t[:, 2 * hs : 3 * hs] = np.tanh(a[:, 2 * hs : 3 * hs])  # (4) C̄_t
            g_t[:, 3 * hs :] = sigmoid(a[:, 3 * hs :])  # (6) o_t
            i, f, g, o = g_t[:, :hs], g_t[:, hs : 2 * hs], g_t[:, 2 * hs : 3 * hs], g_t[:, 3 * hs :]
            c_new = f * c + i * g  # (5)
            tanh_c[t] = np.tanh(c_new)
            h_new = o * tanh_c[t]  # (7)
            step_on = active[t]
            h = np.where(step_on, h_new, h)
            c = np.where(step_on, c_new, c)
            out[t] = np.where(step_on, h_new, 0.0)
        return out, LayerCache(x=x, h_prev=h_prev, c_prev=c_prev, gates=gates, tanh_c=tanh_c)

    # --- backward --------------------------------------------------------------------------------------

    def backward(self, cache: Cache) -> dict[str, np.ndarray]:
        """Gradients of the mean loss returned by `forward`, one array per parameter_names() entry."""
        grads: dict[str, np.ndarray] = {}
        t_idx, b_idx = cache.positions
        steps, batch = cache.inputs.shape
        # (24) ∂ℓ/∂u = (p - y) / τ for each counted position; the loss is the mean over N positions.
        d_logits = cache.probs.copy()
        d_logits[np.arange(cache.tokens), cache.target_ids] -= 1.0
        d_logits /= cache.temperature * max(cache.tokens, 1)
        grads[HEAD_W] = d_logits.T @ cache.head_input  # (25)
        grads[HEAD_B] = d_logits.sum(axis=0)  # (26)
        d_out = np.zeros((steps, batch, self.hidden_size), dtype=d_logits.dtype)
        d_out[t_idx, b_idx] = d_logits @ self.head_weight  # (27) ∂L/∂h̃_t, at the head's input
        drop_masks = cache.drop_masks
        for k in reversed(range(self.num_layers)):
            if drop_masks[k + 1] is not None:
                d_out *= drop_masks[k + 1]  # (36) back through layer k's dropout: the direct part of δh_t
            d_out, grads[weight_ih(k)], grads[weight_hh(k)], grads[bias(k)] = self._lstm_layer_backward(
                k, d_out, cache.layers[k], cache.active
            )
        if drop_masks[0] is not None:
            d_out *= drop_masks[0]  # (36) back through the embedding's dropout: δr_t
        grads[EMBEDDING] = _embedding_grad(cache.inputs, d_out, self.vocab_size)  # (34)
        if self.tie_weights:
            grads[EMBEDDING] += grads.pop(HEAD_W)  # one matrix used twice: the two gradients add up
        return {name: grads[name] for name in self.parameter_names()}

    def _lstm_layer_backward(self, k: int, d_out: np.ndarray, lc: LayerCache, active: np.ndarray):
        """BPTT through one layer (doc section 5, lines 14-21): δh, δC run backward; gradients sum over t."""
        w_ih, w_hh = self.params[weight_ih(k)], self.params[weight_hh(k)]
        steps, batch, hs = d_out.shape
        d_pre = np.empty((steps, batch, 4 * hs), dtype=d_out.dtype)  # δa_t, the four gate pre-activations
        dh_next = np.zeros((batch, hs), dtype=d_out.dtype)  # (37) recurrent part of δh_t, from step t+1
        dc_next = np.zeros((batch, hs), dtype=d_out.dtype)  # (28) ε_{t+1} ⊙ f_{t+1}, from step t+1
        for t in reversed(range(steps)):
            step_on = active[t]
            gates = lc.gates[t]
            i, f, g, o = gates[:, :hs], gates[:, hs : 2 * hs], gates[:, 2 * hs : 3 * hs], gates[:, 3 * hs :]
            tanh_c = lc.tanh_c[t]
            dh = d_out[t] + dh_next  # (37) δh_t = direct + recurrent
            dc = dh * o * (1.0 - tanh_c**2) + dc_next  # (28) ε_t = ∂L/∂C_t
            da = d_pre[t]
            da[:, :hs] = dc * g * i * (1.0 - i)  # (29) δi_t = ε_t ⊙ C̄_t, (30) times σ'
            da[:, hs : 2 * hs] = dc * lc.c_prev[t] * f * (1.0 - f)  # (29) δf_t = ε_t ⊙ C_{t-1}, (30)
            da[:, 2 * hs : 3 * hs] = dc * i * (1.0 - g**2)  # (29) δC̄_t = ε_t ⊙ i_t, (30) times tanh'
            da[:, 3 * hs :] = dh * tanh_c * o * (1.0 - o)  # (29) δo_t = δh_t ⊙ tanh(C_t), (30)
            da *= step_on  # (38) a frozen step (t >= length) computes nothing
            # (31) δh_{t-1} = W^hᵀ δa_t and (28) ε_t ⊙ f_t; (38) frozen steps pass both through unchanged.
            dh_next = np.where(step_on, da @ w_hh, dh_next)
            dc_next = np.where(step_on, dc * f, dc_next)
        flat_pre = d_pre.reshape(steps * batch, 4 * hs)
        d_w_ih = flat_pre.T @ lc.x.reshape(steps * batch, -1)  # (32) input columns of Σ_t δa_t z_tᵀ
        d_w_hh = flat_pre.T @ lc.h_prev.reshape(steps * batch, hs)  # (32) recurrent columns
        d_b = flat_pre.sum(axis=0)  # (33)
        d_x = (flat_pre @ w_ih).reshape(steps, batch, -1)  # (31) δx_t = W^xᵀ δa_t, (35) to the layer below
        return d_x, d_w_ih, d_w_hh, d_b


def _softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, temperature: float):
    """p = softmax(u / τ) row-wise (22) and Σ -log p[target] (23), stable (max subtracted)."""
    scaled = logits if temperature == 1.0 else logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    target_scores = scaled[np.arange(len(targets)), targets]
    probs = np.exp(scaled, out=scaled)  # in place: [N, V] is the largest array of a batch
    total = probs.sum(axis=1, keepdims=True)
    probs /= total
    return probs, np.sum(np.log(total[:, 0]) - target_scores)  # a NumPy scalar: keeps longdouble


def _embedding_grad(inputs: np.ndarray, d_x: np.ndarray, vocab_size: int) -> np.ndarray:
    """(34) ∂L/∂E[v] = Σ over the steps that read token v of δr_t (δx_t through (36)): a scatter-add."""
    grad = np.zeros((vocab_size, d_x.shape[-1]), dtype=d_x.dtype)
    np.add.at(grad, inputs.reshape(-1), d_x.reshape(-1, d_x.shape[-1]))
    return grad


def random_params(
    vocab_size: int,
    embed_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    rng: np.random.Generator,
    scale: float = 0.5,
    dtype=np.float64,
) -> dict[str, np.ndarray]:
    """Random weights with the torch names (for tests and gradcheck; training starts from PoetryLM's init)."""

    def draw(*shape):
        return (rng.uniform(-scale, scale, size=shape)).astype(dtype)

    params = {EMBEDDING: draw(vocab_size, embed_size)}
    for k in range(num_layers):
        in_size = embed_size if k == 0 else hidden_size
        params[weight_ih(k)] = draw(4 * hidden_size, in_size)
        params[weight_hh(k)] = draw(4 * hidden_size, hidden_size)
        params[bias(k)] = draw(4 * hidden_size)
    params[HEAD_W] = draw(vocab_size, hidden_size)
    params[HEAD_B] = draw(vocab_size)
    return params


def random_batch(
    batch_size: int,
    max_len: int,
    vocab_size: int,
    *,
    rng: np.random.Generator,
    padding: bool = True,
    min_len: int = 1,
):
    """Random "poems" laid out like core.corpus.Batch: (inputs, targets, mask, lengths), padded with 0."""
    if padding:
        lengths = rng.integers(min_len, max_len + 1, size=batch_size)
        lengths[rng.integers(batch_size)] = max_len  # the batch is as long as its longest row
    else:
        lengths = np.full(batch_size, max_len)
    tokens = rng.integers(4, vocab_size, size=(batch_size, max_len + 1))  # ids 0-3 are the specials
    tokens[:, 0] = 1  # <bos>
    inputs = np.zeros((batch_size, max_len), dtype=np.int64)
    targets = np.zeros((batch_size, max_len), dtype=np.int64)
    for row, n in enumerate(lengths):
        inputs[row, :n] = tokens[row, :n]
        targets[row, :n] = tokens[row, 1 : n + 1]
        targets[row, n - 1] = 2  # <eos>
    mask = np.arange(max_len)[None, :] < lengths[:, None]
    return inputs, targets, mask, lengths
