"""The poetry language model: embedding -> our LSTM -> dropout -> linear -> logits (softmax in the loss).

    inputs [B, T] ─ embedding ─┬─ [prosody features] ─ LSTM ─ dropout ─ head ─ logits [B, T, V]
                               │   (optional, Prosody)           └ [prosody head: + the characters' tones
                               └ E                                   and groups, weighted from h_t]

Parameter names are a contract (checkpoints, the NumPy model and gradcheck use them):
embedding.weight [V, E]; lstm.weight_ih_l{k} [4H, I], lstm.weight_hh_l{k} [4H, H], lstm.bias_l{k} [4H],
gate order i, f, g, o; head.weight [V, H], head.bias [V]; with prosody also prosody.* (ModelConfig.
parameter_shapes). With every option off this is the assignment's embedding -> LSTM -> linear -> softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.corpus.vocab import PAD
from core.gelv.prosody import BOS_KIND, EOS_KIND, LINE_END
from core.lstm import LSTM
from core.lstm.layer import sequence_dropout
from core.model_config import (
    INIT_SCHEMES,
    PROSODY_CLASSES,
    PROSODY_KINDS,
    PROSODY_LINES,
    PROSODY_POSITIONS,
    ModelConfig,
)


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


def autocast(device, precision: str):
    """The region a training forward pass runs in: bfloat16 matmuls for precision "bf16", else a no-op.
    Open one per step: within one region the bf16 copies of the weights are cached and would miss the
    optimizer's updates."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


class Prosody(nn.Module):
    """What a reader of regulated verse knows at each position, as features next to the embedding.

    From the token ids alone (and the table of core.gelv.prosody, a buffer saved with the weights): the
    character's kind (content, <bos>, <eos>, a line end, ...), its tones and 平水韵 groups, its place in
    the line, the line's index in the poem, and the groups of the poem's first rhyme (the last character of
    line 2) once that is known. Place, line and rhyme are counted from the last <bos> or <eos>: a row
    that starts inside a poem (a stream crop) has them unknown (index 0) until the next poem starts.
    `carry` [B, 4] (place, line, first rhyme id, previous id; -1: unknown) continues the count across
    calls, as the sampler feeds one character at a time; it travels in the model's state."""

    def __init__(self, vocab_size: int, size: int):
        super().__init__()
        self.register_buffer("table", torch.zeros(vocab_size, PROSODY_KINDS + PROSODY_CLASSES))
        self.position = nn.Embedding(PROSODY_POSITIONS + 1, size)  # index 0: unknown
        self.line = nn.Embedding(PROSODY_LINES + 1, size)
        self.kind = nn.Embedding(PROSODY_KINDS, size)
        self.classes = nn.Linear(PROSODY_CLASSES, size, bias=False)  # the character's tones and groups
        self.rhyme = nn.Linear(PROSODY_CLASSES, size, bias=False)  # the first rhyme's

    def fill(self, itos) -> None:
        """The table for a vocabulary (once, when a model is made for a corpus; checkpoints keep it)."""
        from core.gelv.prosody import prosody_table

        with torch.no_grad():
            self.table.copy_(torch.from_numpy(prosody_table(itos)))

    def counts(self, ids: torch.Tensor, carry: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each position's kind, place in its line, line index and first rhyme id, all [B, T] (-1: unknown;
        rhyme PAD: none yet). A place counts the content characters of the line up to this one (0 at a
        line end, <bos> or <eos>); a line counts the line ends since the poem began."""
        B, T = ids.shape
        kinds = self.table[:, :PROSODY_KINDS].argmax(1)[ids]
        if carry is None:
            carry = ids.new_tensor([-1, -1, PAD, PAD]).expand(B, 4)
        place0, line0, rhyme0, prev0 = (c[:, None] for c in carry.unbind(1))
        t = torch.arange(T, device=ids.device).expand(B, T)
        unknown = torch.full_like(t, -1)
        reset = (kinds == BOS_KIND) | (kinds == EOS_KIND)
        end = kinds == LINE_END
        last_break = torch.cummax(torch.where(reset | end, t, unknown), 1).values
        last_reset = torch.cummax(torch.where(reset, t, unknown), 1).values
        place = torch.where(last_break >= 0, t - last_break, torch.where(place0 >= 0, place0 + t + 1, -1))
        ends = end.long().cumsum(1)
        since = ends - ends.gather(1, last_reset.clamp(min=0))
        line = torch.where(last_reset >= 0, since, torch.where(line0 >= 0, line0 + ends, -1))
        prev = torch.cat([prev0, ids[:, :-1]], 1)
        second = torch.cummax(torch.where(end & (line == 2), t, unknown), 1).values  # line 2's end
        rhyme = torch.where(
            (second >= 0) & (second > last_reset),
            prev.gather(1, second.clamp(min=0)),
            torch.where(last_reset >= 0, torch.full_like(ids, PAD), rhyme0),
        )
        return {"kind": kinds, "place": place, "line": line, "rhyme": rhyme}

    def forward(self, ids: torch.Tensor, carry: torch.Tensor | None, lengths=None):
        """ids [B, T] -> features [B, T, size], the class rows [V, C] (for the head), carry after each row."""
        B, T = ids.shape
        classes = self.table[:, PROSODY_KINDS:]
        c = self.counts(ids, carry)
        features = (
            self.position((c["place"].clamp(max=PROSODY_POSITIONS - 1) + 1).clamp(min=0))
            + self.line((c["line"].clamp(max=PROSODY_LINES - 1) + 1).clamp(min=0))
            + self.kind(c["kind"])
            + self.classes(classes[ids])
            + self.rhyme(classes[c["rhyme"]])
        )
        last = torch.full((B, 1), T - 1, dtype=torch.long, device=ids.device)
        if lengths is not None:  # a padded row's count stops at its last real step
            last = (lengths.to(ids.device).long() - 1).clamp(min=0, max=T - 1)[:, None]
        parts = (c["place"], c["line"], c["rhyme"], ids)
        return features, classes, torch.cat([part.gather(1, last) for part in parts], 1)


class PoetryLM(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab=None):
        """vocab (core.corpus.Vocab): fills the prosody table (cfg.prosody); a checkpoint's weights bring
        theirs instead."""
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        self.lstm = LSTM(
            cfg.lstm_input_size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.dropout,
            impl=cfg.lstm_impl,
            locked=cfg.locked_dropout,
            weight_drop=cfg.weight_drop,
        )
        self.head = nn.Linear(cfg.head_input_size, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        # a tied head on a wider LSTM: h_t projected to the embedding size first (a factorised output layer)
        self.project = nn.Linear(cfg.hidden_size, cfg.embed_size, bias=False) if cfg.projected else None
        self.embed_scale = math.sqrt(cfg.embed_size) if cfg.projected else 1.0  # see embed()
        self.prosody = Prosody(cfg.vocab_size, cfg.prosody_size) if cfg.prosody else None
        if self.prosody is not None:
            # the prosody head: logits += (U h_t) · classes(v), the character's tones and groups weighted
            # by h_t; it rides on the head's matmul (extra columns), so it costs 32 of H + 32 inputs
            self.prosody.head = nn.Linear(cfg.head_input_size, PROSODY_CLASSES, bias=False)
            if vocab is not None:
                self.prosody.fill(vocab.itos)
        init_weights(self, cfg.init)

    def forward(self, inputs, lengths=None, state=None, mask=None):
        """inputs [B, T] token ids -> logits [B, T, V] and the state: the LSTM's (h, c), each [L, B, H]
        (with prosody, and the features' carry [B, 4]).

        With `mask` [B, T], only the positions where it is True reach the output layer: logits [N, V] in
        row-major order of the mask. Training and evaluation use this: the largest matmul of the model
        then skips padding, and no [B, T, V] gradient has to be scattered back."""
        cfg, (B, T) = self.cfg, inputs.shape
        x = self.embed(inputs)
        if self.training and cfg.embed_dropout > 0:
            x = x * _character_dropout(inputs, cfg.vocab_size, cfg.embed_dropout).to(x.dtype)
        x = self._dropout(x.reshape(B * T, -1), None, B, T).view(B, T, -1)
        carry = None
        if self.prosody is not None:
            features, classes, carry = self.prosody(inputs, state[2] if state else None, lengths)
            x = torch.cat([x, features.to(x.dtype)], dim=-1)
        out, lstm_state = self.lstm(x, state=state[:2] if state else None, lengths=lengths)
        positions = None  # of the rows of out in the batch: needed by locked dropout only
        if mask is not None:
            positions = mask.reshape(-1).nonzero()[:, 0] if cfg.locked_dropout else None
            out = out[mask]
        out = self._dropout(out.reshape(-1, out.shape[-1]), positions, B, T)
        if self.project is not None:
            out = self.project(out)
        if self.prosody is None:
            logits = self.head(out)
        else:  # [h | U h] @ [W | classes]^T + b: one matmul
            out = torch.cat([out, self.prosody.head(out)], dim=-1)
            weight = torch.cat([self.head.weight, classes.to(self.head.weight.dtype)], dim=1)
            logits = F.linear(out, weight, self.head.bias)
        logits = logits.view(B, T, -1) if mask is None else logits
        return logits, (lstm_state if carry is None else (*lstm_state, carry))

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """The characters' embeddings as the LSTM reads them. A tied head behind a projection stores its
        rows at std 1/√E, so that logits (P h_t)·e_v move no faster under Adam than an untied head's, and
        the LSTM reads them scaled by √E, at unit variance (the Transformer's √d_model, Vaswani et al.
        2017): with the rows at std 1, Adam's first steps on P made logits of std ~70 (loss 8.9 -> 15.9
        in three steps)."""
        x = self.embedding(inputs)
        return x * self.embed_scale if self.embed_scale != 1.0 else x

    def _dropout(self, x, positions, B: int, T: int):
        """cfg.dropout on rows of x that are positions of the batch (locked: one mask per sequence)."""
        if not self.training or self.cfg.dropout == 0:
            return x
        return sequence_dropout(x, self.cfg.dropout, positions, B, T, self.cfg.locked_dropout)

    def loss(self, batch, reduction: str = "mean"):
        """Cross-entropy over the real targets of a Batch ("mean" per token, or "sum")."""
        logits, _ = self(batch.inputs, lengths=batch.lengths, mask=batch.mask)
        return token_cross_entropy(logits, batch.targets[batch.mask], reduction)


def _character_dropout(inputs, vocab_size: int, p: float) -> torch.Tensor:
    """[B, T, 1] scale of each position's embedding: a character dropped (0) wherever it occurs in the batch
    with probability p, the others scaled by 1/(1-p) (AWD-LSTM's embedding dropout)."""
    keep = torch.rand(vocab_size, device=inputs.device) >= p
    return (keep.float() / (1 - p))[inputs].unsqueeze(-1)


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
    (docs/REPORT.md §3). A tied embedding is also the output matrix, whose logits must start small: read
    directly (embed size = hidden size) it keeps std 0.1; behind a projection its rows have std 1/√E and
    the LSTM reads them scaled by √E (PoetryLM.embed), unit variance again, and the projection starts
    small (std 0.1/√H)."""
    cfg = model.cfg
    std = 1.0 / model.embed_scale if cfg.projected else 0.1 if cfg.tie_weights else 1.0
    nn.init.normal_(model.embedding.weight, std=std)
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
    if model.project is not None:
        nn.init.normal_(model.project.weight, std=0.1 / math.sqrt(cfg.hidden_size))
    if model.prosody is not None:
        # five terms add up to the features: each small enough that their sum is about unit variance
        for part in (model.prosody.position, model.prosody.line, model.prosody.kind):
            nn.init.normal_(part.weight, std=0.45)
        for part in (model.prosody.classes, model.prosody.rhyme):
            nn.init.normal_(part.weight, std=0.3)
        nn.init.uniform_(model.prosody.head.weight, -bound, bound)


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
