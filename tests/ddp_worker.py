"""Run under torchrun by tests/test_distributed.py: train a few steps, then dump this rank's weights."""

import sys
from pathlib import Path

from safetensors.torch import save_file

from core.training import distributed as dist
from core.training.settings import TrainConfig
from core.training.trainer import Trainer

run_dir = Path(sys.argv[1])
cfg = TrainConfig(
    corpus="tang300",
    batch_size=16,
    embed_size=32,
    hidden_size=32,
    num_layers=2,
    dropout=0.1,
    max_steps=int(sys.argv[2]),
    eval_every=3,
    seed=5,
    sample_on_eval=False,
)
trainer = Trainer.new(cfg, run_dir)
summary = trainer.run()
weights = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
save_file(weights, str(run_dir.parent / f"rank{dist.rank()}.safetensors"))
print(f"rank {dist.rank()} of {dist.world_size()}: {summary['step']} steps, dev ppl {summary['dev_ppl']:.2f}")
dist.teardown()
