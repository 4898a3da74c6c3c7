"""core.training.memory: a training process keeps the memory a step freed for the next (no new faults)."""

import json
import os
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocate and free a 64 MB tensor, then count the page faults of doing it again.
PROGRAM = """
import json, resource, torch
from core.training import memory
kept = memory.keep_freed_memory()
def touch():
    t = torch.empty(16 << 20).fill_(1.0)  # 64 MB, every page written
    del t
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
aligned = all(torch.empty(n).data_ptr() % 64 == 0 for n in (1, 7, 1000, 1 << 20))
empty = torch.empty(0).numel() == 0 and torch.zeros(3, 0).sum().item() == 0
sums = float(torch.arange(1 << 20, dtype=torch.float64).sum()) == (1 << 20) * ((1 << 20) - 1) / 2
print(json.dumps({"kept": kept, "faults": faults, "aligned": aligned, "empty": empty, "sums": sums}))
"""


def run(env_changes: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "POEMTUI_KEEP_MEMORY"}
    env.update(env_changes)
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    kept = run({})
    assert kept["kept"] is True
    assert kept["faults"] < 200  # 64 MB fresh would be 16,384 faults of 4 KB
    assert (
        kept["aligned"] and kept["empty"] and kept["sums"]
    )  # torch's blocks from plain malloc work as before


@glibc_only
def test_poemtui_keep_memory_0_leaves_malloc_alone(monkeypatch):
    """In this process (whose malloc no test changes: tests/conftest.py guards it): with the switch at 0,
    keep_freed_memory does nothing, and a 64 MB block comes fresh from mmap each time."""
    import resource

    import torch

    from core.training import memory

    monkeypatch.setenv("POEMTUI_KEEP_MEMORY", "0")
    assert memory.keep_freed_memory() is False

    def touch():
        t = torch.empty(16 << 20).fill_(1.0)  # 64 MB, every page written
        del t

    touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults > 10_000  # glibc's default: a fresh mmap, every page faulted in again
