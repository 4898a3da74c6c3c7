"""Peak memory, one side per fresh process (so that neither side's allocations count for the other)."""

from __future__ import annotations

import functools
import gc
import json
import resource
import subprocess
import sys

import torch

from core.bench.models import BenchConfig, build_pair, load_batches
from core.bench.timing import infer_unit, sync, train_unit
from core.model import autocast


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its peak (VmHWM), from /proc; ru_maxrss without /proc."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0), so that loading the corpus does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child_memory(cfg: BenchConfig, side: str, device, precision: str = "fp32") -> dict:
    """Run in a fresh process: one side's training and inference units, then its peak RSS."""
    batches, vocab_size, _ = load_batches(cfg, device)
    ours, ref = build_pair(cfg, vocab_size, device)
    model, uses_lengths = (ours, True) if side == "ours" else (ref, False)
    del ours, ref
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # imports what the step needs
    gc.collect()
    baseline = rss_mb()
    reset_peak_rss()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    amp = functools.partial(autocast, device, precision)
    for _ in range(2):
        train_unit(model, optimizer, batches, uses_lengths, amp)
    model.eval()
    infer_unit(model, batches, uses_lengths, amp)
    sync(device)
    result = {"peak_rss_mb": rss_mb("VmHWM"), "baseline_rss_mb": baseline}
    if torch.device(device).type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def memory_in_children(name: str, args) -> dict[str, dict]:
    """Both sides' children at once: memory does not depend on sharing the CPU."""
    children = {}
    for side in ("ours", "reference"):
        cmd = [
            sys.executable,
            "-m",
            "core.bench",
            "--child-memory",
            side,
            "--config",
            name,
            "--device",
            args.device,
            "--precision",
            args.precision,
        ]
        cmd += ["--threads", str(torch.get_num_threads())] + (["--quick"] if args.quick else [])
        children[side] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for side, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"memory child for {side} failed: {stderr.strip()[-500:]}")
        out[side] = json.loads(stdout)
    return out
