"""The language model's configuration: what core.model.PoetryLM is built from, declared once.

Kept apart from core.model, which needs torch: the command line and the workbench's form check these
settings (as TrainConfig's model fields) before, or without, loading torch, and a checkpoint's model section
is checked against the same declarations before a tensor is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.options import Options, option

MAX_WIDTH = 1 << 22  # vocabulary, embedding and hidden sizes: a bound a file cannot make us exceed
MAX_LAYERS = 64
LSTM_IMPLS = ("fused", "autograd")
INIT_SCHEMES = ("default", "uniform", "xavier", "zeros")  # core.model.INITIALISERS implements them
# the prosody option's sizes (core.gelv.prosody: 6 kinds of token, 2 tones + 30 平水韵 平声 groups)
PROSODY_KINDS, PROSODY_CLASSES = 6, 32
PROSODY_POSITIONS, PROSODY_LINES = 16, 16  # places in a line, lines in a poem the features tell apart


@dataclass
class ModelConfig(Options):
    vocab_size: int = option(64, "characters the model knows, specials included", low=5, high=MAX_WIDTH)
    embed_size: int = option(
        256, "size of each character's embedding vector (the assignment's is)", low=1, high=MAX_WIDTH,
        label="Embedding",
    )  # fmt: skip
    hidden_size: int = option(
        512, "LSTM hidden size (the assignment's hs)", low=1, high=MAX_WIDTH, label="Hidden"
    )
    num_layers: int = option(2, "stacked LSTM layers", low=1, high=MAX_LAYERS, label="Layers")
    dropout: float = option(
        0.2, "dropout on the embedding, between layers and before the output layer (training only)",
        low=0, high=1, high_open=True, label="Dropout",
    )  # fmt: skip
    tie_weights: bool = option(
        False, "share the embedding and output matrices (with embed size < hidden size, the LSTM's output is "
        "first projected down to the embedding size: a factorised, cheaper output layer)", label="Tied",
    )  # fmt: skip
    lstm_impl: str = option(
        "fused", "fused (hand-derived BPTT in one autograd node, fast) or autograd (plain torch ops)",
        choices=LSTM_IMPLS,
    )  # fmt: skip
    init: str = option(
        "default",
        "default (Xavier in, orthogonal recurrent, forget bias 1), uniform, xavier, or zeros (why not)",
        choices=INIT_SCHEMES,
    )
    # regularisers (AWD-LSTM, Merity et al. 2017); all off: the assignment's plain model
    locked_dropout: bool = option(
        False, "--dropout's masks one per sequence, shared by its steps (variational dropout)"
    )
    embed_dropout: float = option(
        0.0, "drop whole characters: rows of the embedding, one mask per batch, the rest rescaled",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    weight_drop: float = option(
        0.0, "DropConnect on the recurrent weights W_hh of every layer, one mask per batch",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    # prosody (core.model.Prosody): what a reader of regulated verse knows at each position
    prosody: bool = option(
        False, "feed each character's tones and 平水韵 groups, its place in the line, the line's index and "
        "the first rhyme's group next to its embedding, and let the output layer see every character's "
        "tones and groups",
    )  # fmt: skip
    prosody_size: int = option(64, "size of the prosody features fed to the LSTM", low=1, high=4096)

    @property
    def projected(self) -> bool:
        """A tied head on an LSTM wider than the embedding reads the LSTM's output projected down."""
        return self.tie_weights and self.embed_size != self.hidden_size

    @property
    def head_input_size(self) -> int:
        return self.embed_size if self.projected else self.hidden_size

    @property
    def lstm_input_size(self) -> int:
        return self.embed_size + (self.prosody_size if self.prosody else 0)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """PoetryLM's parameters in the order of model.parameters() (torch optimizers number them so)."""
        v, e, h, p = self.vocab_size, self.embed_size, self.hidden_size, self.prosody_size
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (v, e)}
        for k in range(self.num_layers):
            shapes[f"lstm.weight_ih_l{k}"] = (4 * h, self.lstm_input_size if k == 0 else h)
            shapes[f"lstm.weight_hh_l{k}"] = (4 * h, h)
            shapes[f"lstm.bias_l{k}"] = (4 * h,)
        if not self.tie_weights:
            shapes["head.weight"] = (v, h)
        shapes["head.bias"] = (v,)
        if self.projected:
            shapes["project.weight"] = (e, h)
        if self.prosody:
            shapes |= {
                "prosody.position.weight": (PROSODY_POSITIONS + 1, p),
                "prosody.line.weight": (PROSODY_LINES + 1, p),
                "prosody.kind.weight": (PROSODY_KINDS, p),
                "prosody.classes.weight": (p, PROSODY_CLASSES),
                "prosody.rhyme.weight": (p, PROSODY_CLASSES),
                "prosody.head.weight": (PROSODY_CLASSES, self.head_input_size),
            }
        return shapes

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """PoetryLM's buffers a checkpoint holds besides the parameters: the prosody table."""
        if not self.prosody:
            return {}
        return {"prosody.table": (self.vocab_size, PROSODY_KINDS + PROSODY_CLASSES)}
