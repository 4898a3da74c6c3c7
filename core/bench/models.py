"""The two sides of the benchmark and their batches: our PoetryLM and the same model around nn.LSTM."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from torch import nn

from core.lstm.dropout import Dropout
from core.model import ModelConfig, PoetryLM

# Share of each input length (<bos> + characters) in the train split, for when the corpus cannot be loaded,
# as measured on chinese-poetry 2.0.1: 五律 49, 七绝 33, 七律 65, 五绝 25; tang300's other 12.5% are long
# 古体 poems of mean length 221.
SYNTHETIC_LENGTHS = {
    "quantangshi": {49: 0.387, 33: 0.285, 65: 0.22, 25: 0.109},
    "tang300": {
        49: 0.293,
        33: 0.207,
        65: 0.188,
        25: 0.109,
        61: 0.023,
        37: 0.023,
        145: 0.02,
        85: 0.012,
        221: 0.125,
    },
}


@dataclass(frozen=True)
class BenchConfig:
    name: str
    corpus: str
    batch_size: int
    embed_size: int
    hidden_size: int
    num_layers: int
    vocab_size: int  # used when the corpus is not available
    batches: int  # batches per timed unit
    dropout: float = 0.2
    corpus_vocab: bool = True  # False (quick): token ids folded into vocab_size, lengths still the corpus's


CONFIGS = {
    "poem": BenchConfig("poem", "quantangshi", 64, 256, 512, 2, 6000, batches=2),
    "poem-1layer": BenchConfig("poem-1layer", "quantangshi", 64, 256, 512, 1, 6000, batches=2),
    "tang300": BenchConfig("tang300", "tang300", 30, 256, 256, 2, 2342, batches=4),
}
GROUPS = {"poem": ["poem", "poem-1layer"], "tang300": ["tang300"], "all": list(CONFIGS)}


def quick(cfg: BenchConfig) -> BenchConfig:
    """Tiny sizes, for tests: the same code paths in a fraction of a second."""
    return replace(
        cfg, batch_size=4, embed_size=16, hidden_size=24, vocab_size=50, batches=1, corpus_vocab=False
    )


# --- the two models -------------------------------------------------------------------------------------


class ReferenceLM(nn.Module):
    """PoetryLM's shape around torch.nn.LSTM: embedding -> dropout -> nn.LSTM -> dropout -> head. Only the
    LSTM differs: the embedding, the head and the dropout around the LSTM are PoetryLM's (core.lstm.dropout);
    between its layers nn.LSTM drops units its own way."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        between_layers = cfg.dropout if cfg.num_layers > 1 else 0.0  # nn.LSTM warns otherwise; same model
        self.lstm = nn.LSTM(
            cfg.embed_size, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=between_layers
        )
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, inputs, lengths=None, state=None):
        """lengths are ignored: the padded positions are computed and the masked loss ignores them."""
        out, state = self.lstm(self.drop(self.embedding(inputs)), state)
        return self.head(self.drop(out)), state


def build_pair(cfg: BenchConfig, vocab_size: int, device) -> tuple[PoetryLM, ReferenceLM]:
    """Our model and the reference holding the same weights (nn.LSTM's two biases: ours and zero)."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(
        vocab_size=vocab_size,
        embed_size=cfg.embed_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        dropout=cfg.dropout,
        lstm_impl="fused",
    )
    ours = PoetryLM(model_cfg)
    ref = ReferenceLM(model_cfg)
    with torch.no_grad():
        ref.embedding.weight.copy_(ours.embedding.weight)
        ref.head.weight.copy_(ours.head.weight)
        ref.head.bias.copy_(ours.head.bias)
        for k in range(cfg.num_layers):
            w_ih, w_hh, b = ours.lstm.layer_weights(k)
            getattr(ref.lstm, f"weight_ih_l{k}").copy_(w_ih)
            getattr(ref.lstm, f"weight_hh_l{k}").copy_(w_hh)
            getattr(ref.lstm, f"bias_ih_l{k}").copy_(b)
            getattr(ref.lstm, f"bias_hh_l{k}").zero_()
    return ours.to(device), ref.to(device)


# --- the work --------------------------------------------------------------------------------------------


def load_batches(cfg: BenchConfig, device) -> tuple[list, int, str]:
    """A unit of batches with the corpus's lengths, the vocabulary size, and where the lengths came from."""
    from core.corpus import Batch, load_corpus, poem_batches
    from core.corpus.buckets import plan_poem_batches

    rng = random.Random(f"bench:{cfg.name}")
    try:
        corpus = load_corpus(cfg.corpus)
    except Exception as exc:  # the corpus is optional here: fall back to its known length mix
        source = f"synthetic {cfg.corpus} length mix (corpus not available: {type(exc).__name__})"
        mix = SYNTHETIC_LENGTHS[cfg.corpus]
        lengths = rng.choices(list(mix), weights=list(mix.values()), k=cfg.batch_size * cfg.batches)
        encoded = [[rng.randrange(4, cfg.vocab_size) for _ in range(n - 1)] for n in lengths]
        batches = poem_batches(encoded, cfg.batch_size, seed=0, epoch=0, shuffle=False)  # sorted by length
        vocab_size = cfg.vocab_size
    else:
        vocab = corpus.build_vocab()
        source = f"{corpus.name} train split, batched as the trainer does (bucketed by length)"
        poems = corpus.splits["train"]
        plan = plan_poem_batches([len(p) for p in poems], cfg.batch_size, seed=0, epoch=0)
        full = [rows for rows in plan if len(rows) == cfg.batch_size] or plan
        chosen = rng.sample(full, min(cfg.batches, len(full)))
        encoded = [vocab.encode(poems[i]) for rows in chosen for i in rows]
        batches = poem_batches(encoded, cfg.batch_size, seed=0, epoch=0, shuffle=False, bucket=False)
        vocab_size = len(vocab)
    if not cfg.corpus_vocab:
        fold = lambda ids: ids % cfg.vocab_size  # noqa: E731
        batches = [Batch(fold(b.inputs), fold(b.targets), b.mask, b.lengths, b.tokens) for b in batches]
        vocab_size = cfg.vocab_size
    return [b.to(device) for b in batches], vocab_size, source
