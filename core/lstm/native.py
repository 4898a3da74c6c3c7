"""Our C++ (core/lstm/csrc/), built once per machine on first use: the fused LSTM's time loops
(lstm_loops.cpp), dropout with a counter-based generator (dropout.cpp, used by core/lstm/dropout.py) and
torch's CPU tensors from plain malloc (cpu_alloc.cpp, used by core/training/memory.py).

In Python every step of the loop costs a dozen small torch kernels, each a pass over the gates and a trip
through the dispatcher; in C++ a step is one matrix product and one pass of elementwise work. Building takes
~15 s with g++ and ninja (torch.utils.cpp_extension; cached under ~/.cache/torch_extensions or
$TORCH_EXTENSIONS_DIR). Where there is no compiler, or POEMTUI_NATIVE=0, the Python loops of
core/lstm/loops.py compute the same numbers, slower, and memory stays as glibc and torch keep it.

`python -m core.lstm` builds it ahead of time and says which loops the fused LSTM will use.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

SOURCES = [
    Path(__file__).with_name("csrc") / name for name in ("lstm_loops.cpp", "dropout.cpp", "cpu_alloc.cpp")
]
OPS = "poemtui_lstm"  # the namespace the library registers (torch.ops.poemtui_lstm)
# -fopenmp: the elementwise passes share torch's OpenMP threads (at::parallel_for); at run time the library
# binds to the libgomp.so.1 torch has already loaded, so there is one thread pool, not two
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


def build_name() -> str:
    """One build per kind of CPU and per checkout: -march=native code from one machine may not run on
    another that shares the cache (a home directory on NFS), and two checkouts of poemtui on one machine
    (their sources at different paths) would otherwise rebuild each other's library at every start. The
    name carries a digest of the CPU's model and flags and of the sources' folder."""
    key = platform.machine() + str(SOURCES[0].parent.resolve())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            key += "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
    except OSError:
        key += platform.processor()
    return f"{OPS}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@functools.cache
def lstm_loops():
    """torch.ops.poemtui_lstm (its forward and backward loops), or None where it cannot be built."""
    if os.environ.get("POEMTUI_NATIVE", "1") == "0":
        return None
    try:
        return _build()
    except Exception as exc:  # no compiler, no ninja, a failed build: the Python loops take over
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        print(
            f"poemtui: compiled LSTM loops unavailable ({reason[:200]}); using the Python loops",
            file=sys.stderr,
        )
        return None


def onednn_dense_view():
    """torch.ops.poemtui_lstm.onednn_dense_view (a plain tensor over a oneDNN tensor's memory, for
    core.lstm.matmul), or None where the library is missing or that memory is not laid out as a plain
    matrix."""
    ops = lstm_loops()
    return ops.onednn_dense_view if ops is not None and _dense_view_works(ops) else None


@functools.cache
def _dense_view_works(ops) -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        values = torch.arange(35, dtype=torch.float32).view(5, 7)
        twin = torch.empty(5, 7, layout=torch._mkldnn)
        ops.onednn_dense_view(twin).copy_(values)
        return torch.equal(twin.to_dense(), values)
    except RuntimeError:
        return False


def _build():
    from torch.utils.cpp_extension import load

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise RuntimeError("no C++ compiler (c++) on PATH")
    if shutil.which("ninja") is None:  # the pip package's binary, where the venv's bin is not on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    load(
        name=build_name(),
        sources=[str(path) for path in SOURCES],
        extra_cflags=list(CFLAGS),  # copies: load() appends to the lists it is given
        extra_ldflags=list(LDFLAGS),
        is_python_module=False,
        verbose=False,
    )
    return getattr(torch.ops, OPS)
