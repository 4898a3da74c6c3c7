"""Training: batches -> our LSTM language model -> events and checkpoints.

The trainer knows nothing about terminals. It reports through `on_event(dict)` (DESIGN.md §6) and writes
checkpoints (DESIGN.md §5). Everything needed to continue a run exactly is in each checkpoint: weights,
optimizer and scheduler state, RNG states, position (epoch, batch, step), best dev perplexity and the
early-stopping counter. Batches depend only on (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from core.corpus import batches_for_mode, load_corpus
from core.corpus.vocab import UNK
from core.errors import CheckpointError, PoemError
from core.model import resolve_precision
from core.runs import checkpoint as ck
from core.runs import validate
from core.runs.folder import BEST, LAST, RunFolder, checkpoint_name
from core.training import distributed as dist
from core.training.backends import NumpyBackend, TorchBackend
from core.training.perplexity import result_from_sums
from core.training.settings import (  # noqa: F401  (re-exported: the CLI, the workbench and tests import them here)
    DEFAULT_LR,
    OPTIMIZERS,
    PRESETS,
    RESUME_OVERRIDABLE,
    StopRequested,
    TrainConfig,
    default_run_name,
    validate_fields,
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PoemError("--device cuda: no CUDA device is available (this torch build or machine has none)")
    return torch.device(name)


# --- RNG state, so a resumed run continues the same random stream ---------------------------------------


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8).cpu())
    cuda = [tensors[k].cpu() for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


@dataclass
class Progress:
    epoch: int = 0  # 0-based index of the epoch in progress
    batch: int = 0  # batches done in that epoch
    step: int = 0  # optimizer steps in total
    tokens_seen: int = 0
    best_dev_ppl: float = math.inf
    best_path: str = ""
    bad_evals: int = 0  # early-stopping counter
    evals: int = 0
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    elapsed_s: float = 0.0  # training wall time over all sessions of this run


class Trainer:
    """Owns one training run: data, backend (model + optimizer), schedule, checkpoints and events."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        on_event: Callable[[dict], None] | None = None,
        resume: Path | None = None,
        stop: StopRequested | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.on_event = on_event or (lambda e: None)
        self.stop = stop if stop is not None else StopRequested()
        self.progress = Progress()
        self.ignored_flags: list[str] = []
        self.dev_ppl: float | None = None  # of the most recent evaluation
        self._session_start = time.perf_counter()
        self._elapsed_before = 0.0
        self._epoch_len = 0
        self._saved_step = -1
        self._train_losses: list[float] = []

        ckpt = ck.load_checkpoint(resume) if resume else None
        if ckpt is not None:
            validate.check_resumable(ckpt)
            self.ignored_flags = _ignored_on_resume(cfg)
            cfg = TrainConfig.from_dict({**ckpt.meta["train"], **_overrides(cfg)})
        cfg.validate()
        self.cfg = cfg
        self.device = dist.setup(resolve_device(cfg.device))
        self.rank, self.world = dist.rank(), dist.world_size()
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)

        self.corpus = load_corpus(cfg.corpus, script=cfg.script, forms=cfg.forms, train_forms=cfg.train_forms)
        if ckpt is not None:
            _check_same_corpus(ckpt, self.corpus, cfg.min_freq)
        self.vocab = ckpt.vocab if ckpt else self.corpus.build_vocab(min_freq=cfg.min_freq)
        self.train_ids = [self.vocab.encode(p) for p in self.corpus.splits["train"]]
        self.rare = _rare_tokens(self.train_ids, len(self.vocab)).to(self.device)
        self.dev_ids = [self.vocab.encode(p) for p in self.corpus.splits["dev"]]
        if not self.train_ids or not self.dev_ids:
            raise PoemError(f"corpus {cfg.corpus}: the train and dev splits must both hold poems")

        mcfg = cfg.model_config(len(self.vocab))
        lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
        args = (mcfg, cfg.optimizer, lr, cfg.momentum, cfg.weight_decay, cfg.clip, self.device)
        if cfg.backend == "numpy":
            self.backend = NumpyBackend(*args, seed=cfg.seed)
            self.precision = "fp32"
        else:
            self.precision = resolve_precision(cfg.precision, self.device)
            self.backend = TorchBackend(*args, precision=self.precision)
        self.scheduler = self._make_scheduler()
        if ckpt is not None:
            self._restore(ckpt)

    def _make_scheduler(self):
        c, holder = self.cfg, self.backend.lr_holder
        if c.lr_schedule == "cosine":
            total = max(c.epochs * len(self.batches_for(0)), 1)

            def factor(step: int) -> float:  # cosine from 1 to 0.01 over all the epochs' steps
                return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

            return torch.optim.lr_scheduler.LambdaLR(holder, factor)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            holder, mode="min", factor=c.lr_factor, patience=c.lr_patience
        )

    @property
    def model(self):
        """The torch PoetryLM with the current weights (for sampling and evaluation)."""
        return self.backend.torch_model()

    # --- state -------------------------------------------------------------------------------------------

    def _restore(self, ckpt: ck.Checkpoint) -> None:
        mine, theirs = self.backend.model.cfg.to_dict(), ckpt.model_config.to_dict()
        if mine != theirs:
            diff = ", ".join(
                f"{k} {theirs.get(k)} -> {mine.get(k)}" for k in mine if mine[k] != theirs.get(k)
            )
            raise CheckpointError(f"{ckpt.path.name}: its model does not match this run ({diff})")
        if ckpt.meta.get("backend", "torch") != self.cfg.backend:
            raise CheckpointError(f"{ckpt.path.name} was trained with --backend {ckpt.meta.get('backend')}")
        self.backend.restore(ckpt)
        self.scheduler.load_state_dict(ckpt.meta["scheduler"])
        self.backend.sync_lr()
        p = ckpt.meta["progress"]
        self.progress = Progress(**{k: p[k] for k in Progress.__dataclass_fields__ if k in p})
        self._elapsed_before = self.progress.elapsed_s
        restore_rng(ckpt.tensors)
        random.setstate(_python_rng_from_json(ckpt.meta["rng"]["python"]))
        if self.rank:
            torch.manual_seed(hash((self.cfg.seed, self.progress.step, self.rank)) % 2**63)

    def _meta(self, dev: dict | None, optimizer_info: dict) -> dict:
        return {
            "model": self.backend.model.cfg.to_dict(),
            "vocab": self.vocab.to_json(),
            "corpus": {
                "name": self.corpus.name,
                "split_seed": self.corpus.split_seed,
                "fingerprint": self.corpus.fingerprint,
                "options": self.corpus.options,
            },
            "train": self.cfg.to_dict(),
            "progress": {**asdict(self.progress), **(dev or {})},
            "optimizer": {"name": self.cfg.optimizer, "state": optimizer_info},
            "scheduler": self.scheduler.state_dict(),
            "rng": {"python": random.getstate()},
            "backend": self.cfg.backend,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.world,
        }

    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._session_start

    # --- evaluation and checkpoints ------------------------------------------------------------------------

    def evaluate_dev(self) -> dict:
        """Perplexity over the whole dev split (each rank scores its share; the sums are added up)."""
        mine = self.dev_ids[self.rank :: self.world]
        total, tokens, unk = dist.all_sum(list(self.backend.score(mine)))
        r = result_from_sums(total, int(tokens), int(unk), len(self.dev_ids))
        return {"dev_loss": r.loss, "dev_ppl": r.perplexity, "dev_tokens": r.tokens}

    def sample(self) -> str | None:
        if not self.cfg.sample_on_eval or not dist.is_main():
            return None
        from core.generation.sampler import Sampler
        from core.generation.settings import SampleSettings

        gen = torch.Generator().manual_seed(self.progress.step)  # own stream: training RNG untouched
        sampler = Sampler(self.model, self.vocab, device=self.device)
        poem = sampler.generate(SampleSettings(start="", num=1), generator=gen)[0]
        self.model.train()
        return poem.text

    def position(self) -> tuple[int, int]:
        """(epoch, batch) for people and file names: epoch 1-based, batch done within it."""
        p = self.progress
        if p.batch == 0 and p.epoch > 0:
            return p.epoch, self._epoch_len
        return p.epoch + 1, p.batch

    def save(self, dev: dict, *, best: bool = False) -> Path | None:
        """Write a checkpoint for the current state, point last (and best) at it, apply retention."""
        self.progress.elapsed_s = self._elapsed()
        p = self.progress
        name = checkpoint_name(*self.position(), dev["dev_ppl"], self.cfg.optimizer)
        if best:
            p.best_path = name
        self._saved_step = p.step
        if not dist.is_main():
            return None
        path = self.run_dir / name
        tensors, optimizer_info = self.backend.state()
        tensors.update(rng_tensors())
        size = ck.save_checkpoint(path, tensors, self._meta(dev, optimizer_info))
        self.folder.point(LAST, path)
        if best:
            self.folder.point(BEST, path)
        self.folder.retain(self.cfg.keep, protect={self.progress.best_path})
        epoch, batch = self.position()
        self.emit(
            "checkpoint",
            epoch=epoch,
            batch=batch,
            step=p.step,
            path=str(path),
            dev_ppl=dev["dev_ppl"],
            best=best,
            bytes=size,
        )
        return path

    # --- the loop ----------------------------------------------------------------------------------------

    def emit(self, event: str, **fields) -> None:
        if dist.is_main():
            self.on_event({"event": event, **fields})

    def batches_for(self, epoch: int):
        c = self.cfg
        batches = batches_for_mode(
            self.train_ids,
            c.seq_mode,
            c.batch_size,
            c.seq_len,
            seed=c.seed,
            epoch=epoch,
            crops=c.crops_per_batch,
        )
        return dist.shard(batches, seed=c.seed, epoch=epoch)

    def run(self) -> dict:
        """Train until the epochs, the patience, the time or the step budget run out, or a stop is asked."""
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
        p = self.progress
        self._session_start = time.perf_counter()
        c = self.cfg
        deadline = self._session_start + c.max_minutes * 60 if c.max_minutes > 0 else math.inf
        try:
            status = self._loop(deadline)
            if self._saved_step != p.step:
                # A stop between evaluations: a final checkpoint, evaluated "off the record" so that the LR
                # schedule and early stopping stay exactly those of an uninterrupted run.
                self.save(self._evaluate(scheduled=False))
        except PoemError as exc:
            self.emit("error", message=str(exc), step=p.step)
            raise
        last = self.folder.pointer(LAST)
        summary = {
            "status": status,
            "epoch": self.position()[0],
            "step": p.step,
            "best_dev_ppl": _finite(p.best_dev_ppl),
            "dev_ppl": self.dev_ppl,
            "best_path": str(self.run_dir / p.best_path) if p.best_path else None,
            "last_path": str(last) if last.exists() else None,
            "elapsed_s": self._elapsed(),
            "tokens_seen": p.tokens_seen,
            "skipped_steps": p.skipped_steps,
        }
        self.emit("done", **summary)
        return summary

    def _should_stop(self, deadline: float) -> str | None:
        c, p = self.cfg, self.progress
        reason = None
        if self.stop:
            reason = self.stop.reason or "interrupted"
        elif time.perf_counter() > deadline:
            reason = "time_limit"
        elif c.max_steps and p.step >= c.max_steps:
            reason = "max_steps"
        if dist.any_rank(reason is not None):
            return reason or "stopped_by_another_rank"
        return None

    def _loop(self, deadline: float) -> str:
        """The epochs and batches; returns why training ended."""
        c, p = self.cfg, self.progress
        window_tokens, window_start, tokens_per_s = 0, time.perf_counter(), 0.0
        bad_in_a_row = 0
        while p.epoch < c.epochs:
            batches = self.batches_for(p.epoch)
            self._epoch_len = len(batches)
            while p.batch < len(batches):
                reason = self._should_stop(deadline)
                if reason:
                    return reason
                batch = self._unk_dropout(batches[p.batch].to(self.device))
                out = self.backend.train_step(batch)
                p.batch += 1
                if out is None:
                    p.skipped_steps += 1
                    bad_in_a_row += 1
                    self.emit(
                        "error",
                        message=f"non-finite loss or gradient at step {p.step + 1}: skipped",
                        step=p.step,
                        skipped_steps=p.skipped_steps,
                    )
                    if bad_in_a_row >= c.max_bad_steps:
                        raise PoemError(
                            f"{bad_in_a_row} non-finite steps in a row: training stopped "
                            "(lower --lr or raise --clip); the last good checkpoint is kept"
                        )
                    continue
                bad_in_a_row = 0
                loss, grad_norm = out
                p.step += 1
                if self.cfg.lr_schedule == "cosine":
                    self.scheduler.step()
                    self.backend.sync_lr()
                p.tokens_seen += batch.tokens * self.world
                window_tokens += batch.tokens * self.world
                self._train_losses.append(loss)
                now = time.perf_counter()
                if now - window_start >= 1.0 or tokens_per_s == 0.0:
                    tokens_per_s = window_tokens / max(now - window_start, 1e-9)
                    window_tokens, window_start = 0, now
                self.emit(
                    "batch",
                    epoch=p.epoch + 1,
                    batch=p.batch,
                    batches=len(batches),
                    epochs=c.epochs,
                    step=p.step,
                    loss=loss,
                    grad_norm=grad_norm,
                    lr=self._lr(),
                    tokens_per_s=tokens_per_s,
                    elapsed_s=self._elapsed(),
                )
                mid_epoch_eval = c.eval_every and p.step % c.eval_every == 0 and p.batch < len(batches)
                if mid_epoch_eval and self._scheduled_eval():
                    return "early_stopped"
            p.epoch += 1
            p.batch = 0
            if self._scheduled_eval():
                return "early_stopped"
        return "finished"

    def _unk_dropout(self, batch):
        """Show the model <unk> where it will meet it: characters seen once in train become <unk> with
        probability unk_rate, in the targets and in the inputs that feed them back. The draw depends only
        on (seed, step), so a resumed run replaces the same characters."""
        rate = self.cfg.unk_rate
        if rate <= 0:
            return batch
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed * 1_000_003 + self.progress.step)
        draw = torch.rand(batch.targets.shape, generator=gen).to(batch.targets.device)
        hit = self.rare[batch.targets] & (draw < rate) & batch.mask
        targets = batch.targets.masked_fill(hit, UNK)
        inputs = batch.inputs.clone()
        inputs[:, 1:] = inputs[:, 1:].masked_fill(hit[:, :-1], UNK)
        return replace(batch, inputs=inputs, targets=targets)

    def _lr(self) -> float:
        return self.backend.lr_holder.param_groups[0]["lr"]

    def _evaluate(self, *, scheduled: bool) -> dict:
        """Dev perplexity over the whole dev split, and an eval event (with a sample poem)."""
        p = self.progress
        dev = self.evaluate_dev()
        self.dev_ppl = dev["dev_ppl"]
        train_loss = sum(self._train_losses) / len(self._train_losses) if self._train_losses else None
        self._train_losses = []
        epoch, batch = self.position()
        self.emit(
            "eval",
            epoch=epoch,
            batch=batch,
            step=p.step,
            loss=train_loss,
            dev_loss=dev["dev_loss"],
            dev_ppl=dev["dev_ppl"],
            # A stop's final evaluation is off the record (saved as last, never as best, so that a resumed
            # run equals an uninterrupted one): it does not change the best either.
            best_dev_ppl=_finite(min(p.best_dev_ppl, dev["dev_ppl"]) if scheduled else p.best_dev_ppl),
            lr=self._lr(),
            elapsed_s=self._elapsed(),
            sample=self.sample(),
            scheduled=scheduled,
        )
        return dev

    def _scheduled_eval(self) -> bool:
        """Evaluate, step the LR schedule and early stopping, save; True when patience has run out."""
        c, p = self.cfg, self.progress
        dev = self._evaluate(scheduled=True)
        p.evals += 1
        improved = math.isfinite(dev["dev_ppl"]) and dev["dev_ppl"] < p.best_dev_ppl  # NaN never becomes best
        if improved:
            p.best_dev_ppl = dev["dev_ppl"]
            p.bad_evals = 0
        else:
            p.bad_evals += 1
        if c.lr_schedule == "plateau":
            self.scheduler.step(dev["dev_loss"] if math.isfinite(dev["dev_loss"]) else math.inf)
            self.backend.sync_lr()
        if improved or p.evals % c.save_every == 0:
            self.save(dev, best=improved)
        return c.patience > 0 and p.bad_evals >= c.patience


def _rare_tokens(encoded: list[list[int]], vocab_size: int) -> torch.Tensor:
    """Boolean [V]: characters that occur exactly once in the train split."""
    counts = torch.bincount(
        torch.tensor([t for row in encoded for t in row], dtype=torch.long), minlength=vocab_size
    )
    return counts == 1


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _python_rng_from_json(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _ignored_on_resume(cfg: TrainConfig) -> list[str]:
    """Flags given with --resume that the checkpoint's own configuration overrides (to warn about)."""
    return sorted(set(getattr(cfg, "_explicit", set())) - RESUME_OVERRIDABLE)


def _overrides(cfg: TrainConfig) -> dict:
    """On resume the checkpoint's configuration wins, except for the schedule settings given anew."""
    explicit = getattr(cfg, "_explicit", set())
    return {k: getattr(cfg, k) for k in explicit & RESUME_OVERRIDABLE}


def _check_same_corpus(ckpt: ck.Checkpoint, corpus, min_freq: int) -> None:
    was = ckpt.meta["corpus"]
    if was.get("fingerprint") != corpus.fingerprint:
        now = len(corpus.build_vocab(min_freq=min_freq))
        raise CheckpointError(
            f"the corpus changed since {ckpt.path.name} was saved (fingerprint "
            f"{str(was.get('fingerprint'))[:12]} -> {corpus.fingerprint[:12]}; trained with "
            f"|V|={len(ckpt.vocab)}, this corpus has {now}); resume needs the same corpus"
        )
