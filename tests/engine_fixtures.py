"""Fixtures shared by the engine tests: small real training runs on the real tang300 corpus."""

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
