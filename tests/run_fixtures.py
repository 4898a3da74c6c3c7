"""Run folders with fixed content for the comparison tests: real checkpoints written by Trainer.save (no
training: fixed progress numbers and file times) and a metrics.jsonl of made-up but fixed events."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from core.training.settings import TrainConfig
from core.training.trainer import Trainer

T0 = 1_709_287_200.0  # 2024-03-01 10:00 UTC
BATCHES = 20
TINY = dict(
    corpus="tang300",
    batch_size=16,
    embed_size=16,
    hidden_size=16,
    num_layers=1,
    dropout=0.1,
    lr=0.01,
    epochs=3,
    patience=2,
    eval_every=0,
    keep=0,
    seed=3,
)


def fixed_events(ppls: list[float], speed: float, loss0: float, tokens_per_step: int = 700) -> list[dict]:
    """The events of a run of len(ppls) epochs of BATCHES batches; `speed` seconds per step."""
    events: list[dict] = []
    for epoch, ppl in enumerate(ppls, start=1):
        for batch in range(1, BATCHES + 1):
            step = (epoch - 1) * BATCHES + batch
            loss = loss0 + 1.8 * math.exp(-step / 12) + 0.05 * math.sin(step * 1.7)
            events.append(
                dict(event="batch", epoch=epoch, batch=batch, batches=BATCHES, epochs=len(ppls), step=step,
                     loss=loss, lr=0.01, tokens_per_s=tokens_per_step / speed,
                     tokens_seen=step * tokens_per_step, elapsed_s=step * speed)
            )  # fmt: skip
        step = epoch * BATCHES
        events.append(
            dict(event="eval", epoch=epoch, batch=BATCHES, step=step, tokens_seen=step * tokens_per_step,
                 dev_loss=math.log(ppl), dev_ppl=ppl, best_dev_ppl=min(ppls[:epoch]),
                 elapsed_s=step * speed + 1)
        )  # fmt: skip
    steps = len(ppls) * BATCHES
    events.append(
        dict(event="done", status="finished", step=steps, best_dev_ppl=min(ppls), elapsed_s=steps * speed + 2)
    )
    return events


def build_run(
    root: Path,
    name: str,
    ppls: list[float],
    *,
    speed: float = 1.5,
    loss0: float = 5.9,
    t0: float = T0,
    **settings,
) -> Path:
    """A run folder: a checkpoint per epoch (Trainer.save, the clock fixed) and its metrics.jsonl."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    trainer = Trainer.new(TrainConfig.from_dict({**TINY, **settings}), run_dir)
    steps = len(ppls) * BATCHES
    trainer._elapsed = lambda: steps * speed + 2.0  # a fixed clock
    p = trainer.progress
    for i, ppl in enumerate(ppls):
        p.epoch, p.batch, p.step, p.tokens_seen = i, BATCHES, (i + 1) * BATCHES, (i + 1) * BATCHES * 700
        best = ppl < p.best_dev_ppl
        p.best_dev_ppl = min(p.best_dev_ppl, ppl)
        path = trainer.save({"dev_ppl": ppl, "dev_loss": math.log(ppl), "dev_tokens": 4915}, best=best)
        os.utime(path, (t0 + 600 * i, t0 + 600 * i))
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for event in fixed_events(ppls, speed, loss0):
            fh.write(json.dumps(event) + "\n")
    return run_dir
