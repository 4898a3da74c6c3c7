"""What a run is made of besides its weights, and how a checkpoint restores it: where training stands
(Progress), the random streams, the learning-rate schedule, and the data a run trains and scores on.

Everything here is a function of the settings and the checkpoint, so a resumed run continues exactly:
batches depend only on (seed, epoch), the LR only on the step (cosine) or the evaluations (plateau).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from core.corpus import load_corpus
from core.corpus.vocab import UNK, Vocab
from core.errors import CheckpointError, PoemError
from core.training import distributed as dist
from core.training.settings import TrainConfig


@dataclass
class Progress:
    epoch: int = 0  # 0-based index of the epoch in progress
    batch: int = 0  # batches done in that epoch
    step: int = 0  # optimizer steps in total
    tokens_seen: int = 0
    best_dev_ppl: float = math.inf  # of any evaluation: the `best` checkpoint's
    best_path: str = ""
    patience_best: float = math.inf  # of the scheduled evaluations, which early stopping counts against
    bad_evals: int = 0  # early-stopping counter
    evals: int = 0
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    elapsed_s: float = 0.0  # training wall time over all sessions of this run

    @classmethod
    def from_meta(cls, p: dict) -> Progress:
        progress = cls(**{k: p[k] for k in cls.__dataclass_fields__ if k in p})
        if "patience_best" not in p:  # saved before a stop's evaluation could become the best
            progress.patience_best = progress.best_dev_ppl
        return progress


@dataclass
class RunData:
    """The corpus of a run, encoded with the run's vocabulary."""

    corpus: object  # core.corpus.Corpus
    vocab: Vocab
    train_ids: list[list[int]]
    dev_ids: list[list[int]]

    @classmethod
    def load(cls, cfg: TrainConfig, vocab: Vocab | None = None) -> RunData:
        """The corpus the settings name; its own vocabulary unless one is given (a checkpoint's)."""
        corpus = load_run_corpus(cfg)
        return cls.of(corpus, vocab or corpus.build_vocab(min_freq=cfg.min_freq), cfg.corpus)

    @classmethod
    def of(cls, corpus, vocab: Vocab, name: str) -> RunData:
        """A loaded corpus encoded with `vocab` (`name`: the corpus as the settings call it)."""
        data = cls(
            corpus,
            vocab,
            [vocab.encode(p) for p in corpus.splits["train"]],
            [vocab.encode(p) for p in corpus.splits["dev"]],
        )
        if not data.train_ids or not data.dev_ids:
            raise PoemError(f"corpus {name}: the train and dev splits must both hold poems")
        return data

    def rare_tokens(self) -> torch.Tensor:
        """Boolean [V]: characters that occur exactly once in the train split (what --unk-rate replaces)."""
        flat = torch.tensor([t for row in self.train_ids for t in row], dtype=torch.long)
        return torch.bincount(flat, minlength=len(self.vocab)) == 1

    def corpus_meta(self) -> dict:
        c = self.corpus
        return {
            "name": c.name,
            "split_seed": c.split_seed,
            "fingerprint": c.fingerprint,
            "options": c.options,
        }

    def check_same_corpus(self, ckpt, min_freq: int) -> None:
        """Resuming needs the corpus the checkpoint was trained on (its vocabulary indexes it)."""
        was = ckpt.meta["corpus"]
        if was.get("fingerprint") != self.corpus.fingerprint:
            now = len(self.corpus.build_vocab(min_freq=min_freq))
            raise CheckpointError(
                f"the corpus changed since {ckpt.path.name} was saved (fingerprint "
                f"{str(was.get('fingerprint'))[:12]} -> {self.corpus.fingerprint[:12]}; trained with "
                f"|V|={len(ckpt.vocab)}, this corpus has {now}); resume needs the same corpus"
            )


def unk_dropout(batch, rare: torch.Tensor, rate: float, seed: int, step: int):
    """Show the model <unk> where it will meet it: characters seen once in train (`rare`, a boolean [V])
    become <unk> with probability `rate`, in the targets and in the inputs that feed them back. The draw
    depends only on (seed, step), so a resumed run replaces the same characters."""
    if rate <= 0:
        return batch
    gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + step)
    draw = torch.rand(batch.targets.shape, generator=gen).to(batch.targets.device)
    hit = rare[batch.targets] & (draw < rate) & batch.mask
    targets = batch.targets.masked_fill(hit, UNK)
    inputs = batch.inputs.clone()
    inputs[:, 1:] = inputs[:, 1:].masked_fill(hit[:, :-1], UNK)
    return replace(batch, inputs=inputs, targets=targets)


def load_run_corpus(cfg: TrainConfig):
    """The corpus the settings name, processed as they say."""
    return load_corpus(cfg.corpus, script=cfg.script, forms=cfg.forms, train_forms=cfg.train_forms)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PoemError("--device cuda: no CUDA device is available (this torch build or machine has none)")
    return torch.device(name)


def start_processes(cfg: TrainConfig) -> torch.device:
    """The device (and, under torchrun, the process group), and every random stream seeded."""
    device = dist.setup(resolve_device(cfg.device))
    torch.manual_seed(cfg.seed + dist.rank())
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    return device


def lr_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int, elapsed=None):
    """cosine: the LR factor falls from 1 to 0.01 over all epochs, a pure function of the step; with
    --max-minutes and `elapsed` (seconds of training so far, a callable), over whichever ends first, the
    epochs or the minutes, so a time-budgeted run anneals fully on a slow CPU as on a fast one. plateau:
    multiplied by lr_factor after lr_patience evaluations without a better dev loss."""
    if cfg.lr_schedule == "cosine":
        total = max(cfg.epochs * steps_per_epoch, 1)
        seconds = cfg.max_minutes * 60 if elapsed is not None else 0.0

        def factor(step: int) -> float:
            done = min(step, total) / total
            if seconds > 0:
                done = max(done, min(elapsed() / seconds, 1.0))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * done))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
    )


# --- random streams, so that a resumed run continues the same ones ------------------------------------


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def restore_rng(ckpt, cfg: TrainConfig, step: int) -> None:
    tensors = ckpt.tensors
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8).cpu())
    cuda = [tensors[k].cpu() for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = ckpt.meta["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    if dist.rank():  # the checkpoint holds rank 0's stream; the others derive theirs
        torch.manual_seed(hash((cfg.seed, step, dist.rank())) % 2**63)
