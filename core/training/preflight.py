"""What a run needs before its first step, checked before the model is built: the backend, the first
epoch's batches and whether they fit in memory, a vocabulary a sample poem can be written in, and a run
folder that is this run's alone (locked for its one writer)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.corpus import batches_for_mode
from core.corpus.vocab import SPECIALS
from core.errors import PoemError
from core.model import resolve_precision
from core.paths import prepare_folder
from core.runs.folder import LAST, RunFolder
from core.training import budget
from core.training import distributed as dist
from core.training.backends import NumpyBackend, TorchBackend
from core.training.settings import DEFAULT_LR, TrainConfig
from core.training.state import RunData


def make_backend(cfg: TrainConfig, vocab, device: torch.device):
    """The model and optimizer these settings describe: autograd through our LSTM, or Part 1's NumPy."""
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    args = (cfg.model_config(len(vocab)), cfg.optimizer, lr, cfg.momentum, cfg.weight_decay, cfg.clip, device)
    if cfg.backend == "numpy":
        return NumpyBackend(*args, seed=cfg.seed)
    return TorchBackend(*args, precision=resolve_precision(cfg.precision, device), vocab=vocab)


def epoch_batches(cfg: TrainConfig, data: RunData, epoch: int) -> list:
    """This rank's batches of one epoch: a function of (seed, epoch) only, so a resumed run gets the same."""
    batches = batches_for_mode(
        data.train_ids,
        cfg.seq_mode,
        cfg.batch_size,
        cfg.seq_len,
        seed=cfg.seed,
        epoch=epoch,
        crops=cfg.crops_per_batch,
    )
    return dist.shard(batches, seed=cfg.seed, epoch=epoch)


def fits_in_memory(cfg: TrainConfig, data: RunData, device: torch.device) -> list:
    """Refuse, before the model is built, settings whose largest batch would not fit in the memory
    available (core.training.budget); returns the first epoch's batches, which the estimate read."""
    first = epoch_batches(cfg, data, 0)
    shapes = [(b.inputs.shape[0], b.inputs.shape[1], b.tokens) for b in first] or [(1, 2, 1)]
    eval_shape = budget.largest_scoring_batch([len(p) for p in data.dev_ids], budget.EVAL_BATCH)
    budget.check_fits(budget.estimate(cfg, len(data.vocab), shapes, eval_shape), cfg.seq_mode, device)
    return first


# the characters a sample poem needs (core.generation.sampler.Sampler refuses a vocabulary without them)
SAMPLE_NEEDS = "，。"


def check_vocab(cfg: TrainConfig, data: RunData, source: str) -> None:
    """The sample poem written at each evaluation needs "，" and "。": a vocabulary without them is refused
    before training, not at the first evaluation, naming the cause (the corpus, or --min-freq)."""
    if len(data.vocab) <= len(SPECIALS):  # the specials only: nothing to learn, and no checkpoint would load
        raise PoemError(
            f"{source}: --min-freq {cfg.min_freq} leaves no character in the vocabulary: lower it"
        )
    missing = [ch for ch in SAMPLE_NEEDS if ch not in data.vocab.stoi]
    if not (cfg.sample_on_eval and dist.is_main() and missing):
        return
    marks = "".join(f"「{ch}」" for ch in missing)
    in_train = any(ch in poem for ch in missing for poem in data.corpus.splits["train"])
    cause = (
        f"--min-freq {cfg.min_freq} leaves {marks} out of the vocabulary: lower it"
        if in_train
        else f"the vocabulary (train split) has no {marks}: train on punctuated poems"
    )
    raise PoemError(
        f"{source}: {cause}, or pass --sample-on-eval false (the sample poem written at each evaluation "
        "needs them)"
    )


def refuse_other_run(run_dir: Path, resumed: Path | None) -> None:
    """A new run never adopts a folder that holds another run; a resumed run may continue in its own."""
    folder = RunFolder(run_dir)
    if resumed is not None and _same_folder(resumed.parent, run_dir):
        return
    what = folder.holds_run() if os.path.isdir(run_dir) else ""
    if not what:
        return
    if resumed is None:
        raise PoemError(
            f"--run-dir {run_dir} holds another run ({what}): continue it with --resume "
            f"{folder.pointer(LAST)}, or choose a new --run-dir"
        )
    raise PoemError(
        f"--run-dir {run_dir} holds another run ({what}); --resume {resumed} continues its own run: leave "
        "out --run-dir, or choose a new one"
    )


def claim_folder(run_dir: Path, resumed: Path | None) -> RunFolder:
    """The run folder, created, writable and locked for this process (rank 0 under torchrun: the others
    write nothing), and then (under the lock) checked again for another run."""
    folder = RunFolder(run_dir)
    if not dist.is_main():
        return folder
    prepare_folder(run_dir, "--run-dir")
    folder.claim()
    try:
        refuse_other_run(run_dir, resumed)
    except PoemError:
        folder.release()
        raise
    return folder


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
