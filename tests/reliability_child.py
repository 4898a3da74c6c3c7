"""Child processes for the reliability tests (tests/test_reliability_*.py). Not a test module.

python tests/reliability_child.py saver RUN_DIR
    A "zygote": imports torch once, then for each line "fork" on stdin forks a child that saves
    checkpoints into RUN_DIR in a loop, the way the trainer does (core.runs.checkpoint.save_checkpoint, then
    atomic_link for last and best, then retention), until it is killed. The zygote prints the child's
    pid, waits for it, and prints "exit <status>". Forking saves the second of start-up per kill.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEEP = 3  # newest checkpoints kept besides best, as the trainer's --keep


def _saver_state(run_dir: Path):
    """What every forked child needs, imported and built once in the zygote (no torch computation yet)."""
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: here, once, not per fork)

    from core.corpus import load_corpus
    from core.model import PoetryLM  # noqa: F401
    from core.runs import checkpoint  # noqa: F401

    corpus = load_corpus("tang300")
    vocab = corpus.build_vocab()
    return corpus, vocab


def _save_forever(run_dir: Path, corpus, vocab) -> None:
    import random

    import torch

    from core.model import ModelConfig, PoetryLM
    from core.runs import atomic, folder, state_json
    from core.runs import checkpoint as ck

    torch.set_num_threads(1)
    last = run_dir / f"last{ck.EXT}"
    step = ck.read_meta(last)["progress"]["step"] if last.exists() else 0
    torch.manual_seed(step)
    cfg = ModelConfig(vocab_size=len(vocab), embed_size=64, hidden_size=64, num_layers=1, dropout=0.0)
    model = PoetryLM(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    best_ppl = float("inf")
    while True:
        step += 1
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=1e-3)
        ppl = 1000.0 / step + random.random()
        best = ppl < best_ppl
        best_ppl = min(best_ppl, ppl)
        name = folder.checkpoint_name(1, step, ppl, "adam")
        opt_tensors, opt_info = state_json.flatten_optimizer(optimizer.state_dict())
        tensors = {**ck.model_tensors(model), **opt_tensors, "rng.torch": torch.get_rng_state()}
        meta = {
            "model": cfg.to_dict(),
            "vocab": vocab.to_json(),
            "corpus": {"name": corpus.name, "fingerprint": corpus.fingerprint},
            "train": {"corpus": "tang300"},
            "progress": {"epoch": 0, "batch": step, "step": step, "best_dev_ppl": best_ppl, "dev_ppl": ppl},
            "optimizer": {"name": "adam", "state": opt_info},
            "scheduler": scheduler.state_dict(),
            "rng": {"python": random.getstate()},
        }
        ck.save_checkpoint(run_dir / name, tensors, meta)
        atomic.atomic_link(run_dir / name, last)
        if best:
            atomic.atomic_link(run_dir / name, run_dir / f"best{ck.EXT}")
        # retention as the trainer does it: after the save, never before; the best is kept
        best_step = ck.read_meta(run_dir / f"best{ck.EXT}")["progress"]["step"]
        files = sorted(run_dir.glob(f"rnn_*{ck.EXT}"), key=_step_of)
        for f in files[:-KEEP]:
            if _step_of(f) != best_step:
                f.unlink(missing_ok=True)


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[2])  # rnn_<epoch>_<batch>_<ppl>_<optimizer>


def saver(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus, vocab = _saver_state(run_dir)
    for line in sys.stdin:
        if line.strip() != "fork":
            break
        pid = os.fork()
        if pid == 0:
            try:
                _save_forever(run_dir, corpus, vocab)
            finally:
                os._exit(3)  # only reached if saving failed: the test sees the status
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("exit", status, flush=True)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "saver":
        saver(Path(rest[0]))
    else:
        sys.exit(f"unknown command {command}")
