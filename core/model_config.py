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
        False, "share the embedding and output matrices (needs embed size == hidden size)", label="Tied"
    )
    lstm_impl: str = option(
        "fused", "fused (hand-derived BPTT in one autograd node, fast) or autograd (plain torch ops)",
        choices=LSTM_IMPLS,
    )  # fmt: skip
    init: str = option(
        "default",
        "default (Xavier in, orthogonal recurrent, forget bias 1), uniform, xavier, or zeros (why not)",
        choices=INIT_SCHEMES,
    )

    @classmethod
    def combination_problems(cls, values: dict) -> dict[str, str]:
        if values.get("tie_weights") and values.get("embed_size") != values.get("hidden_size"):
            return {"tie_weights": "needs embed size == hidden size"}
        return {}

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """PoetryLM's parameters in the order of model.parameters() (torch optimizers number them so)."""
        v, e, h = self.vocab_size, self.embed_size, self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (v, e)}
        for k in range(self.num_layers):
            shapes[f"lstm.weight_ih_l{k}"] = (4 * h, e if k == 0 else h)
            shapes[f"lstm.weight_hh_l{k}"] = (4 * h, h)
            shapes[f"lstm.bias_l{k}"] = (4 * h,)
        if not self.tie_weights:
            shapes["head.weight"] = (v, h)
        shapes["head.bias"] = (v,)
        return shapes
