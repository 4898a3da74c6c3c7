"""Training: batches -> our LSTM language model -> events and checkpoints.

    trainer = Trainer.new(cfg, run_dir)     # or .resume(ckpt, overrides={...}), .init_from(ckpt, cfg, dir)
    summary = trainer.run()                 # until the epochs, patience, time or steps run out

The trainer knows nothing about terminals. It reports through `on_event(dict)` (DESIGN.md §6) and writes
checkpoints (DESIGN.md §5) into its run folder (core.runs.folder). Everything needed to continue a run
exactly is in each checkpoint: weights, optimizer and scheduler state, RNG states, position (epoch, batch,
step), best dev perplexity and the early-stopping counter (core.training.state).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from core.errors import CheckpointError, PoemError
from core.runs import checkpoint as ck
from core.runs import validate
from core.runs.folder import BEST, LAST, RunFolder, checkpoint_name
from core.training import distributed as dist
from core.training import finetune
from core.training.perplexity import result_from_sums
from core.training.preflight import (
    check_vocab,
    claim_folder,
    epoch_batches,
    fits_in_memory,
    make_backend,
    refuse_other_run,
)
from core.training.settings import RESUME_OVERRIDABLE, StopRequested, TrainConfig
from core.training.state import (
    Progress,
    RunData,
    lr_scheduler,
    restore_rng,
    rng_tensors,
    start_processes,
    unk_dropout,
)


class Trainer:
    """Owns one training run: data, backend (model + optimizer), schedule, checkpoints and events."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path | RunFolder,
        data: RunData,
        backend,
        *,
        on_event: Callable[[dict], None] | None = None,
        stop: StopRequested | None = None,
        first_batches: list | None = None,
    ):
        """Assemble a run from its parts; Trainer.new, .resume and .init_from build them (and claim it)."""
        self.cfg = cfg
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.run_dir = self.folder.path
        self._batches: tuple[int, list] | None = (0, first_batches) if first_batches is not None else None
        self.data = data
        self.vocab = data.vocab
        self.backend = backend
        self.device = backend.device
        self.precision = backend.precision
        self.rank, self.world = dist.rank(), dist.world_size()
        self.rare = data.rare_tokens().to(self.device)
        self._session_start = time.perf_counter()
        self._elapsed_before = 0.0
        self.scheduler = lr_scheduler(cfg, backend.lr_holder, len(self.batches_for(0)), self._elapsed)
        self.on_event = on_event or (lambda e: None)
        self.stop = stop if stop is not None else StopRequested()
        self.progress = Progress()
        self.dev_ppl: float | None = None  # of the most recent evaluation
        self._epoch_len = 0
        self._saved_step = -1
        self._train_losses: list[float] = []
        self.origin: dict | None = None  # a fine-tune's starting checkpoint (core.training.finetune)
        self._evaluate_first = False  # a fine-tune scores its starting point on the new dev split first

    @classmethod
    def new(cls, cfg: TrainConfig, run_dir: Path, **kwargs) -> Trainer:
        """A fresh run of these settings (checked here, once, like every way in), in a folder that holds no
        other run (`--resume` is the only way to continue one)."""
        cfg.check()
        refuse_other_run(run_dir, None)  # before seconds of corpus loading
        device = start_processes(cfg)
        data = RunData.load(cfg)
        check_vocab(cfg, data, cfg.corpus)
        first = fits_in_memory(cfg, data, device)
        folder = claim_folder(run_dir, None)
        return cls(cfg, folder, data, make_backend(cfg, data.vocab, device), first_batches=first, **kwargs)

    @classmethod
    def resume(
        cls, checkpoint: Path, run_dir: Path | None = None, *, overrides: dict | None = None, **kwargs
    ) -> Trainer:
        """The run of `checkpoint`, continued exactly where it stopped. Its settings define the run; only
        the schedule (RESUME_OVERRIDABLE) may be given anew, in `overrides`."""
        ckpt = ck.load_checkpoint(checkpoint)
        validate.check_resumable(ckpt)
        fixed = sorted(set(overrides or {}) - RESUME_OVERRIDABLE)
        if fixed:
            raise PoemError(f"--resume: {', '.join(fixed)} cannot change; the checkpoint fixes it")
        cfg = TrainConfig.from_dict({**ckpt.meta["train"], **(overrides or {})})
        cfg.check()
        run_dir = Path(run_dir) if run_dir is not None else Path(checkpoint).parent
        refuse_other_run(run_dir, Path(checkpoint))
        device = start_processes(cfg)
        data = RunData.load(cfg, vocab=ckpt.vocab)
        data.check_same_corpus(ckpt, cfg.min_freq)
        check_vocab(cfg, data, Path(checkpoint).name)
        first = fits_in_memory(cfg, data, device)
        folder = claim_folder(run_dir, Path(checkpoint))
        trainer = cls(cfg, folder, data, make_backend(cfg, data.vocab, device), first_batches=first, **kwargs)
        trainer._restore(ckpt)
        trainer.origin = ckpt.meta.get("init_from")
        return trainer

    @classmethod
    def init_from(cls, checkpoint: Path, cfg: TrainConfig, run_dir: Path, **kwargs) -> Trainer:
        """A new run of `cfg` (finetune.fine_tune_config) from the weights of `checkpoint`, not its optimizer:
        the vocabulary extended by the new corpus's characters, new rows as core.training.finetune says."""
        return finetune.start_run(cls, checkpoint, cfg, run_dir, **kwargs)

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
        self.progress = Progress.from_meta(ckpt.meta["progress"])
        self._elapsed_before = self.progress.elapsed_s
        restore_rng(ckpt, self.cfg, self.progress.step)

    def _meta(self, dev: dict | None, optimizer_info: dict) -> dict:
        return {
            "model": self.backend.model.cfg.to_dict(),
            "vocab": self.vocab.to_json(),
            "corpus": self.data.corpus_meta(),
            "train": self.cfg.to_dict(),
            "progress": {**asdict(self.progress), **(dev or {})},
            "optimizer": {"name": self.cfg.optimizer, "state": optimizer_info},
            "scheduler": self.scheduler.state_dict(),
            "rng": {"python": random.getstate()},
            "backend": self.cfg.backend,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.world,
            **({"init_from": self.origin} if self.origin else {}),
        }

    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._session_start

    # --- evaluation and checkpoints ------------------------------------------------------------------------

    def evaluate_dev(self) -> dict:
        """Perplexity over the whole dev split (each rank scores its share; the sums are added up)."""
        dev_ids = self.data.dev_ids
        total, tokens, unk = dist.all_sum(list(self.backend.score(dev_ids[self.rank :: self.world])))
        r = result_from_sums(total, int(tokens), int(unk), len(dev_ids))
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
        self.folder.check_held()
        path = self.run_dir / name
        tensors, optimizer_info = self.backend.state()
        tensors.update(rng_tensors())
        size = ck.save_checkpoint(path, tensors, self._meta(dev, optimizer_info))
        self.folder.point(LAST, path)
        if best:
            self.folder.point(BEST, path)
        self.folder.retain(self.cfg.keep, protect={p.best_path})
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
        """This rank's batches of an epoch (the last epoch's are kept: the loop and the schedule ask)."""
        if self._batches is None or self._batches[0] != epoch:
            self._batches = (epoch, epoch_batches(self.cfg, self.data, epoch))
        return self._batches[1]

    def run(self) -> dict:
        """Train until the epochs, the patience, the time or the step budget run out, or a stop is asked."""
        if dist.is_main() and not self.folder.claimed:  # a Trainer assembled by hand: claim it now
            self.folder = claim_folder(self.run_dir, None)
        p = self.progress
        self._session_start = time.perf_counter()
        c = self.cfg
        deadline = self._session_start + c.max_minutes * 60 if c.max_minutes > 0 else math.inf
        try:
            if self._evaluate_first and p.step == 0:
                self._evaluate_start()
            status = self._loop(deadline)
            if self._saved_step != p.step:
                # A stop between evaluations: a final checkpoint. Its evaluation counts for the best
                # checkpoint, but not for the LR schedule or early stopping, so that a resumed run
                # continues exactly as an uninterrupted one would.
                dev = self._evaluate(scheduled=False)
                self.save(dev, best=self._improves_best(dev))
        except PoemError as exc:
            self.emit("error", message=str(exc), step=p.step, fatal=True)  # the run ends with it
            self.folder.release()
            raise
        except BaseException:
            self.folder.release()
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
        self.folder.release()  # done writing: the folder may be resumed (by this process, too)
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
                batch = unk_dropout(batches[p.batch].to(self.device), self.rare, c.unk_rate, c.seed, p.step)
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
                        last = self.folder.pointer(LAST)
                        kept = (
                            f"the last good checkpoint is kept ({last})"
                            if last.exists()
                            else ("no checkpoint of this run had been saved yet")
                        )
                        raise PoemError(
                            f"{bad_in_a_row} non-finite steps in a row: training stopped "
                            f"(lower --lr or raise --clip); {kept}"
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
                    max_steps=c.max_steps or None,
                    loss=loss,
                    grad_norm=grad_norm,
                    lr=self._lr(),
                    tokens_per_s=tokens_per_s,
                    tokens_seen=p.tokens_seen,
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
            tokens_seen=p.tokens_seen,
            loss=train_loss,
            dev_loss=dev["dev_loss"],
            dev_ppl=dev["dev_ppl"],
            best_dev_ppl=_finite(min(p.best_dev_ppl, dev["dev_ppl"])),
            lr=self._lr(),
            elapsed_s=self._elapsed(),
            sample=self.sample(),
            scheduled=scheduled,
        )
        return dev

    def _evaluate_start(self) -> None:
        """A fine-tune's start on the new dev split: an eval event at step 0 that no schedule counts."""
        self._evaluate_first = False
        dev = self.evaluate_dev()
        if self.origin is not None:
            self.origin["dev_ppl_before"] = _finite(dev["dev_ppl"])
        at = dict(epoch=0, batch=0, step=0, tokens_seen=0, lr=self._lr(), elapsed_s=self._elapsed())
        self.emit("eval", **at, **dev, scheduled=False, initial=True)

    def _improves_best(self, dev: dict) -> bool:
        """A better dev perplexity than any evaluation before (NaN never is); it becomes the best."""
        better = math.isfinite(dev["dev_ppl"]) and dev["dev_ppl"] < self.progress.best_dev_ppl
        if better:
            self.progress.best_dev_ppl = dev["dev_ppl"]
        return better

    def _scheduled_eval(self) -> bool:
        """Evaluate, step the LR schedule and early stopping, save; True when patience has run out."""
        c, p = self.cfg, self.progress
        dev = self._evaluate(scheduled=True)
        p.evals += 1
        # early stopping counts against the scheduled evaluations only (a stop's own is off that record)
        if math.isfinite(dev["dev_ppl"]) and dev["dev_ppl"] < p.patience_best:
            p.patience_best = dev["dev_ppl"]
            p.bad_evals = 0
        else:
            p.bad_evals += 1
        improved = self._improves_best(dev)
        if c.lr_schedule == "plateau":
            self.scheduler.step(dev["dev_loss"] if math.isfinite(dev["dev_loss"]) else math.inf)
            self.backend.sync_lr()
        if improved or p.evals % c.save_every == 0:
            self.save(dev, best=improved)
        return c.patience > 0 and p.bad_evals >= c.patience


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
