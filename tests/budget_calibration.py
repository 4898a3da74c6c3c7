"""Measure what core.training.budget estimates: the growth of the peak RSS over two training steps on the
largest batch and one evaluation of the dev split, for one configuration. Not a test module.

    OMP_NUM_THREADS=1 .venv/bin/python tests/budget_calibration.py '{"corpus": "tang300", "batch_size": 64}'

Prints one JSON object: the largest batch (rows, positions, tokens), |V|, the estimate and its parts, and
the measured growth (MiB). docs/RELIABILITY.md ("Memory") has the figures of five configurations.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.training import budget
from core.training.memory import keep_freed_memory
from core.training.preflight import epoch_batches, make_backend
from core.training.settings import TrainConfig
from core.training.state import RunData

MiB = 1 << 20


def rss() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    torch.set_num_threads(1)
    keep_freed_memory()  # as core.train does
    cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
    data = RunData.load(cfg)
    batches = epoch_batches(cfg, data, 0)
    shapes = [(b.inputs.shape[0], b.inputs.shape[1], b.tokens) for b in batches]
    eval_shape = budget.largest_scoring_batch([len(p) for p in data.dev_ids], budget.EVAL_BATCH)
    est = budget.estimate(cfg, len(data.vocab), shapes, eval_shape)
    before = rss()
    backend = make_backend(cfg, data.vocab, torch.device("cpu"))
    largest = max(batches, key=lambda b: b.tokens * len(data.vocab) + b.inputs.numel())
    for _ in range(2):
        backend.train_step(largest)
    backend.score(data.dev_ids)
    print(
        json.dumps(
            {
                "config": cfg.to_dict() | {"vocab": len(data.vocab)},
                "largest_batch": [largest.inputs.shape[0], largest.inputs.shape[1], largest.tokens],
                "estimate_mib": round(est.total / MiB),
                "parts_mib": {k: round(v / MiB) for k, v in est.parts.items()},
                "measured_mib": round((peak() - before) / MiB),
            }
        )
    )


if __name__ == "__main__":
    main()
