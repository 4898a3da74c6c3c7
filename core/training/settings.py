"""Training settings: TrainConfig (each setting declared once, core.options), the presets, and default
learning rates.

Torch-free on purpose: the workbench's form and the command line read and check settings before (or
without) loading torch, and a signal arriving during start-up has a StopRequested to land on.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.corpus.buckets import SEQ_MODES
from core.corpus.load import FORMS
from core.model_config import ModelConfig
from core.options import Options, device_problem, option, same_as

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw")
MODEL_FIELDS = tuple(name for name in ModelConfig.specs() if name != "vocab_size")

# Learning rates chosen by the sweep in docs/REPORT.md (python -m core.experiments optimizers).
DEFAULT_LR = {
    "sgd": 1.0,
    "momentum": 0.1,
    "nesterov": 0.1,
    "adagrad": 0.05,
    "adadelta": 1.0,
    "rmsprop": 1e-3,
    "adam": 2e-3,
    "adamw": 2e-3,
}


def _device_problem(name: str) -> str | None:
    return device_problem(name, auto=True)


@dataclass
class TrainConfig(Options):
    # data
    corpus: str = option(
        "quantangshi",
        "tang300, quantangshi, or a path to a UTF-8 file (one poem a line) or chinese-poetry JSON",
        label="Corpus",
    )
    script: str = option(
        "simplified", "simplified (OpenCC t2s) or traditional", choices=("simplified", "traditional")
    )
    forms: str | None = option(
        None, "quantangshi: regular (五/七言 绝句 and 律诗) or all", choices=FORMS, none="the corpus's own"
    )
    train_forms: str | None = option(
        None, "all: train also on the poems --forms regular leaves out (dev and test stay regular)",
        choices=FORMS, none="as --forms",
    )  # fmt: skip
    min_freq: int = option(1, "characters seen fewer times in train become <unk>", low=1)
    unk_rate: float = option(
        0.0, "replace characters seen once in train by <unk> at this rate, so <unk> is learned", low=0, high=1
    )
    seq_mode: str = option(
        "poem",
        "poem: one poem per sequence (bucketed); stream: poems joined, crops of --seq-len; mixed: half the "
        "poems each way",
        choices=SEQ_MODES, label="Sequences",
    )  # fmt: skip
    seq_len: int = option(
        64, "crop length in stream and mixed mode (characters)", low=2, high=4096, label="Length"
    )
    crops_per_batch: int = option(0, "crops per batch in stream and mixed mode (0: --batch-size)", low=0)
    batch_size: int = option(
        64, "poems (or crops) per batch (the assignment's bs)", low=1, label="Batch size"
    )
    # model (declared in core.model_config)
    embed_size: int = same_as(ModelConfig, "embed_size")
    hidden_size: int = same_as(ModelConfig, "hidden_size")
    num_layers: int = same_as(ModelConfig, "num_layers")
    dropout: float = same_as(ModelConfig, "dropout")
    tie_weights: bool = same_as(ModelConfig, "tie_weights")
    init: str = same_as(ModelConfig, "init")
    lstm_impl: str = same_as(ModelConfig, "lstm_impl")
    locked_dropout: bool = same_as(ModelConfig, "locked_dropout")
    embed_dropout: float = same_as(ModelConfig, "embed_dropout")
    weight_drop: float = same_as(ModelConfig, "weight_drop")
    prosody: bool = same_as(ModelConfig, "prosody")
    prosody_size: int = same_as(ModelConfig, "prosody_size")
    # optimisation
    optimizer: str = option(
        "adam", "the update rule (docs/REPORT.md compares them)", choices=OPTIMIZERS, label="Optimizer"
    )
    lr: float | None = option(
        None,
        "learning rate",
        low=0,
        low_open=True,
        high=1e3,
        none="per optimizer, docs/REPORT.md",
        label="Learn. rate",
    )
    momentum: float = option(
        0.9, "momentum of the momentum and nesterov optimizers", low=0, high=1, high_open=True
    )
    weight_decay: float = option(0.0, "L2 weight decay (decoupled for adamw)", low=0, high=10)
    clip: float = option(1.0, "max global gradient norm (0: no clipping)", low=0)
    lr_schedule: str = option(
        "plateau", "plateau (halve the LR when dev loss stalls) or cosine (to lr/100 over the epochs)",
        choices=("plateau", "cosine"),
    )  # fmt: skip
    lr_factor: float = option(
        0.5, "multiply the LR by this when dev loss stops improving (a constant LR: a large --lr-patience)",
        low=0, high=1, low_open=True, high_open=True,
    )  # fmt: skip
    lr_patience: int = option(0, "evaluations without improvement before the LR is reduced", low=0)
    max_bad_steps: int = option(5, "consecutive non-finite steps (skipped) before training stops", low=1)
    # schedule
    epochs: int = option(20, "passes over the training poems", low=1, high=100_000, label="Epochs")
    patience: int = option(
        3,
        "evaluations without a better dev perplexity before stopping early (0: never)",
        low=0,
        label="Patience",
    )
    eval_every: int = option(
        0, "evaluate every N batches (0: at the end of each epoch)", low=0, label="Eval every"
    )
    save_every: int = option(
        1,
        "save a checkpoint at every k-th evaluation (a new best is always saved)",
        low=1,
        label="Save every",
    )
    keep: int = option(3, "keep the newest K checkpoints besides best and last (0: keep all)", low=0)
    max_minutes: float = option(
        0.0, "stop after this many minutes of training, saving a checkpoint; a cosine schedule anneals "
        "over them if they end before the epochs (0: no limit)", low=0,
    )  # fmt: skip
    max_steps: int = option(
        0, "stop after this many optimizer steps in total, saving a checkpoint (0: no limit)", low=0
    )
    seed: int = option(2019, "random seed: the same seed gives the same run on CPU", low=0, high=2**63 - 1)
    device: str = option("auto", "auto, cpu or cuda", test=_device_problem, label="Device")
    backend: str = option(
        "torch", "torch (autograd) or numpy (the hand-derived gradients of docs/lstm-derivatives.md)",
        choices=("torch", "numpy"),
    )  # fmt: skip
    precision: str = option(
        "auto",
        "fp32, bf16 (matmuls in bfloat16, state and gradients fp32; evaluation stays fp32) or auto (bf16 "
        "where the hardware computes it natively)",
        choices=("auto", "fp32", "bf16"),
    )
    sample_on_eval: bool = option(True, "write a sample poem at every evaluation")

    @classmethod
    def combination_problems(cls, values: dict) -> dict[str, str]:
        if values.get("backend") == "numpy":  # Part 1's NumPy model is the assignment's plain one
            extras = [
                k for k in ("prosody", "locked_dropout", "embed_dropout", "weight_drop") if values.get(k)
            ]
            if values.get("tie_weights") and values.get("embed_size") != values.get("hidden_size"):
                extras.append("tie_weights")  # a projected head
            if extras:
                return {extras[0]: "the NumPy backend trains the plain model only (use --backend torch)"}
        return ModelConfig.combination_problems(values)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The ModelConfig these settings describe."""
        return ModelConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})


PRESETS: dict[str, dict] = {
    # The assignment's setting on 唐诗三百首: batch 30, hidden 256, one poem per sequence.
    "tang300": dict(
        corpus="tang300",
        batch_size=30,
        embed_size=256,
        hidden_size=256,
        num_layers=1,
        dropout=0.5,
        tie_weights=True,  # 256 poems: sharing input and output embeddings is the best regulariser here
        unk_rate=0.5,  # 5% of dev characters never occur in train; <unk> must carry probability
        # docs/results/optimizers-tang300.md: RMSprop's per-coordinate steps suit 2,265 mostly rare characters
        # (best of eight optimizers, each at its swept lr); halving the lr after 2 evaluations without
        # improvement: dev ppl 288.7 against 328.7 for Adam at 3e-3 (both in float32, torch's dropout masks;
        # 296.8 against 325.3 with core.lstm.dropout's)
        optimizer="rmsprop",
        lr=3e-3,
        lr_patience=2,
        weight_decay=0.0,
        epochs=60,
        patience=4,
        eval_every=0,
        # float32: 26 s; with bf16 matmuls 20 s but dev ppl 292.2. Exact float32 keeps the figure comparable
        # with the NumPy backend's and with the optimizer study's (docs/REPORT.md §1, §5).
        precision="fp32",
    ),
    # The workbench default: 全唐诗's regular poems.
    "quantangshi": dict(
        corpus="quantangshi",
        # half the poems in rows of 128 characters that run on across poems: the LSTM learns to keep its
        # bearings past a regular poem's 64 characters (tang300's long 古体 poems; docs/REPORT.md §6)
        seq_mode="mixed",
        seq_len=128,
        unk_rate=0.5,  # 唐诗三百首 has characters 全唐诗's train split lacks; <unk> must carry probability
        batch_size=64,
        embed_size=256,
        hidden_size=512,
        num_layers=2,
        # what a reader of regulated verse knows at each position (tones, 平水韵 groups, place in the line,
        # the first rhyme), fed next to the embedding, and a head that can weight the rhyme group
        prosody=True,
        # the output layer reads h_t projected to 256 and shares the embedding: half the head's FLOPs
        tie_weights=True,
        # AWD-LSTM's regularisers, light: within 30 minutes the model sees each poem at most ~18 times
        dropout=0.1,
        locked_dropout=True,
        weight_drop=0.1,
        embed_dropout=0.02,
        optimizer="adam",
        lr=3e-3,
        lr_schedule="cosine",  # anneals to lr/100 over the epochs (docs/REPORT.md §6)
        precision="auto",  # bf16 matmuls where the CPU has AVX512-BF16; float32 elsewhere
        # 30 minutes of training, annealed over whichever ends first: the minutes or 20 epochs (2 cores
        # with AVX512-BF16 fit ~18 epochs, a 2-core AVX2 CPU ~3; dev still fell at epoch 10, §11)
        max_minutes=30.0,
        epochs=20,
        patience=3,
        eval_every=400,
    ),
    # Shows real learning within a minute on a 2-core CPU (8 s here).
    "quick": dict(
        corpus="tang300",
        batch_size=30,
        embed_size=128,
        hidden_size=128,
        num_layers=1,
        dropout=0.3,
        optimizer="adam",
        lr=5e-3,
        epochs=15,
        patience=3,
        eval_every=0,
    ),
}


# A fine-tune (`core.train --init-from CKPT`, core.training.finetune) starts from the checkpoint's own
# training settings with this schedule on top (then a preset's, then the flags): a small corpus, one poem
# per row, a learning rate well below a fresh run's (the weights are already good: large steps would first
# undo them), halved at every evaluation without a better dev loss, early stopping on dev perplexity.
# Measured in README, "Fine-tune on your own poems".
FINE_TUNE: dict = dict(
    seq_mode="poem",
    batch_size=32,
    lr=1e-3,
    lr_schedule="plateau",
    lr_patience=0,
    epochs=30,
    patience=3,
    eval_every=0,
    save_every=1,
    max_minutes=0.0,
    max_steps=0,
)


# Flags that `core.train --resume` accepts anew: the schedule. Everything else comes from the checkpoint, so
# it defines the run (the experiments rely on this to resume their runs with a new budget).
RESUME_OVERRIDABLE = frozenset(
    {
        "epochs",
        "max_minutes",
        "max_steps",
        "patience",
        "eval_every",
        "save_every",
        "keep",
        "device",
        "sample_on_eval",
    }
)


class StopRequested:
    """Set from a signal handler or the UI; the trainer checks it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "interrupted") -> None:
        self.reason = self.reason or reason
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def default_run_name(cfg: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    corpus = Path(cfg.corpus).stem if os.sep in cfg.corpus else cfg.corpus
    return f"{stamp}-{corpus}-{cfg.optimizer}"
