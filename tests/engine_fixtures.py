"""Fixtures shared by the engine tests: small real training runs on the real tang300 corpus, each trained
once per session (per xdist worker) and shared by every test that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.training.settings import TrainConfig
from core.training.trainer import Trainer

TINY = dict(
    corpus="tang300",
    batch_size=16,
    embed_size=32,
    hidden_size=32,
    num_layers=1,
    dropout=0.1,
    optimizer="adam",
    lr=1e-2,
    epochs=1,
    patience=0,
    eval_every=8,
    keep=2,
    seed=7,
)


def tiny_config(**overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **overrides})


def train_tiny(run_dir: Path, events: list | None = None, resume: Path | None = None, **overrides) -> dict:
    on_event = events.append if events is not None else None
    if resume is not None:
        return Trainer.resume(resume, run_dir, overrides=overrides, on_event=on_event).run()
    return Trainer.new(tiny_config(**overrides), run_dir, on_event=on_event).run()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder with real checkpoints of a small model trained for two epochs on tang300."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_tiny(run_dir, epochs=2)
    return run_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "best.safetensors"


@pytest.fixture(scope="session")
def short_run_checkpoint(tmp_path_factory) -> Path:
    """last.safetensors of a run stopped after 3 steps (no evaluation, no sample): the real checkpoint the
    reliability tests take apart. Read-only: copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("runs") / "short"
    train_tiny(run_dir, max_steps=3, eval_every=0, sample_on_eval=False)
    return run_dir / "last.safetensors"
