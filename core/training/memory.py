"""Let the next training step reuse the memory the last one freed, instead of faulting in fresh pages.

torch allocates CPU tensors with malloc, and glibc serves every block above its mmap threshold (at most
32 MB) with a fresh mmap and unmaps it on free. A step of the 全唐诗 preset allocates and frees about a
gigabyte (activations, logits, gradients), so every step touches brand-new memory: ~240,000 page faults
per step. Two changes remove them:

- glibc keeps large blocks in its heap (mallopt: no mmap per block, no trimming), and
- torch's tensors come from plain malloc (core/lstm/csrc/cpu_alloc.cpp) instead of posix_memalign, whose
  blocks glibc < 2.38 cannot hand to the next request of the same size: with the heap kept, that alone
  grew the preset's RSS to 5.3 GB over a run.

What this gained, and what else was tried (transparent huge pages, the mmap threshold alone, a caching
allocator, malloc_trim after each evaluation), is measured in docs/REPORT.md §8.

POEMTUI_KEEP_MEMORY=0 leaves malloc and torch's allocator as they are. Linux with glibc only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # mallopt's parameters (glibc's malloc.h)
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 64 << 20))


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        return libc
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None


def keep_freed_memory() -> bool:
    """glibc: serve large blocks from the heap instead of one mmap each, and never shrink the heap by
    itself; torch's tensors from plain malloc (core/lstm/csrc/cpu_alloc.cpp), which that heap reuses block for
    block. True if both took effect. Called by the programs that train (core.train, core.bench)."""
    libc = _libc()
    if libc is None or os.environ.get("POEMTUI_KEEP_MEMORY", "1") == "0":
        return False
    from core.lstm import native

    ops = native.lstm_loops()
    if ops is None or not ops.malloc_cpu_allocations():
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
