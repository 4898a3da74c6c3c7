"""Two processes on this machine (torchrun, gloo over loopback) train one model with DDP."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings
from core.runs.checkpoint import load_checkpoint, read_meta

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_hold_identical_weights_and_the_checkpoint_loads_alone(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(REPO / "tests" / "ddp_worker.py"),
        str(run),
        "6",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rank 0 of 2: 6 steps" in out.stdout and "rank 1 of 2: 6 steps" in out.stdout
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0)
    # rank 0 alone wrote the run folder; its checkpoint equals the ranks' weights and loads in one process
    ckpt = load_checkpoint(run / "last.safetensors")
    assert read_meta(run / "last.safetensors")["world_size"] == 2
    for name, value in ckpt.model_state.items():
        torch.testing.assert_close(value, a[name], atol=0, rtol=0)
    poem = Sampler.from_checkpoint(run / "last.safetensors").generate(SampleSettings(start="山", seed=1))[0]
    assert poem.text.startswith("山")
