"""Training settings: the TrainConfig dataclass, its validation, the presets, and default learning rates.

Torch-free on purpose: the workbench's form and the command line read and check settings before (or
without) loading torch, and a signal arriving during start-up has a StopRequested to land on.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from core.corpus.buckets import SEQ_MODES
from core.errors import PoemError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw")
INIT_SCHEMES = ("default", "uniform", "xavier", "zeros")  # core.model.INIT_SCHEMES implements them

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


@dataclass
class TrainConfig:
    # data
    corpus: str = "quantangshi"
    script: str = "simplified"
    forms: str | None = None  # None: the corpus's default ("regular" for quantangshi)
    train_forms: str | None = None  # None: as forms; "all": train also on the other forms (dev/test stay)
    min_freq: int = 1
    unk_rate: float = (
        0.0  # replace train characters seen once with <unk> at this rate (learns where OOV goes)
    )
    # "poem": one poem per row, bucketed; "stream": poems joined, crops of seq_len; "mixed": half each
    seq_mode: str = "poem"
    seq_len: int = 64
    crops_per_batch: int = 0  # rows of a batch of crops (stream, mixed); 0: batch_size
    batch_size: int = 64
    # model
    embed_size: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False
    init: str = "default"
    lstm_impl: str = "fused"
    # optimisation
    optimizer: str = "adam"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip: float = 1.0  # max global gradient norm; 0 disables clipping
    lr_schedule: str = (
        "plateau"  # "plateau": ReduceLROnPlateau on dev loss; "cosine": to lr/100 over the epochs
    )
    lr_factor: float = 0.5  # ReduceLROnPlateau on dev loss
    lr_patience: int = 0
    max_bad_steps: int = 5  # consecutive non-finite losses/gradients before giving up
    # schedule
    epochs: int = 20
    patience: int = 3  # evaluations without a better dev perplexity before stopping
    eval_every: int = 0  # batches between evaluations; 0: at the end of every epoch only
    save_every: int = 1  # save a checkpoint at every k-th evaluation (and always at the end)
    keep: int = 3  # besides best and last, keep the newest k checkpoints
    max_minutes: float = 0.0  # 0: no limit
    max_steps: int = 0  # 0: no limit (stop after this many optimizer steps in total)
    seed: int = 2019
    device: str = "auto"
    backend: str = "torch"  # "torch" (autograd through our LSTM) or "numpy" (hand-derived gradients)
    precision: str = (
        "auto"  # training: "fp32", "bf16" (matmuls in bfloat16, the rest fp32), "auto" (bf16 if native)
    )
    sample_on_eval: bool = True  # a sample poem at every evaluation, for the live view

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def model_config(self, vocab_size: int):
        """The core.model.ModelConfig these settings describe."""
        from core.model import ModelConfig

        return ModelConfig(
            vocab_size=vocab_size,
            embed_size=self.embed_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            tie_weights=self.tie_weights,
            lstm_impl=self.lstm_impl,
            init=self.init,
        )

    def validate(self) -> None:
        """Refuse impossible settings with one line (the TUI's form uses the same checks)."""
        problems = validate_fields(self.to_dict())
        if problems:
            field_name, message = next(iter(problems.items()))
            raise PoemError(f"--{field_name.replace('_', '-')}: {message}")


def validate_fields(d: dict) -> dict[str, str]:
    """field -> problem, for every invalid training setting (empty when all is well)."""
    problems: dict[str, str] = {}

    def need(name: str, ok: bool, message: str) -> None:
        if name in d and not ok and name not in problems:
            problems[name] = message

    def positive(name: str, allow_zero: bool = False) -> None:
        if name in d:
            v = d[name]
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v >= 0 if allow_zero else v > 0)
            need(name, ok, "must be ≥ 0" if allow_zero else "must be > 0")

    for name in ("batch_size", "embed_size", "hidden_size", "num_layers", "epochs", "seq_len"):
        positive(name)
        need(name, isinstance(d.get(name), int), "must be a whole number")
    for name in ("patience", "eval_every", "keep", "max_steps", "lr_patience", "min_freq", "crops_per_batch"):
        positive(name, allow_zero=True)
    positive("save_every")
    need(
        "unk_rate",
        isinstance(d.get("unk_rate", 0), int | float) and 0 <= d.get("unk_rate", 0) <= 1,
        "must be in [0, 1]",
    )
    for name in ("weight_decay", "clip", "max_minutes"):
        positive(name, allow_zero=True)
    if d.get("lr") is not None:
        positive("lr")
    need(
        "dropout",
        isinstance(d.get("dropout"), int | float) and 0 <= d.get("dropout", 0) < 1,
        "must be in [0, 1)",
    )
    need(
        "lr_factor",
        isinstance(d.get("lr_factor"), int | float) and 0 < d.get("lr_factor", 0.5) < 1,
        "must be in (0, 1) (a constant LR: a large --lr-patience)",
    )
    need("optimizer", d.get("optimizer") in OPTIMIZERS, f"choose one of {', '.join(OPTIMIZERS)}")
    need("seq_mode", d.get("seq_mode") in SEQ_MODES, "choose " + ", ".join(SEQ_MODES))
    need("backend", d.get("backend") in ("torch", "numpy"), "choose torch or numpy")
    need("precision", d.get("precision", "auto") in ("auto", "fp32", "bf16"), "choose auto, fp32 or bf16")
    need("lr_schedule", d.get("lr_schedule", "plateau") in ("plateau", "cosine"), "choose plateau or cosine")
    need(
        "device",
        d.get("device") in ("auto", "cpu", "cuda") or str(d.get("device", "")).startswith("cuda:"),
        "choose auto, cpu or cuda",
    )
    need("lstm_impl", d.get("lstm_impl") in ("fused", "autograd"), "choose fused or autograd")
    need("init", d.get("init") in INIT_SCHEMES, f"choose one of {', '.join(INIT_SCHEMES)}")
    if d.get("tie_weights"):
        need("tie_weights", d.get("embed_size") == d.get("hidden_size"), "needs embed size == hidden size")
    return problems


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
        dropout=0.1,  # 1.5M training characters: dev loss still falls in epoch 10 (dev 4.535 -> 4.533)
        optimizer="adam",
        lr=3e-3,
        # anneals to lr/100 over the 10 epochs, which fit in ~20 minutes on 2 cores (7 epochs: dev 102.7;
        # 9: 98.4, tang300 dev 152.3; 10: 93.1, tang300 dev 148.6; docs/REPORT.md §6)
        lr_schedule="cosine",
        precision="auto",  # bf16 matmuls where the CPU has AVX512-BF16 (1.7x the tokens/s of fp32 here)
        epochs=10,
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
