"""Huge pages for torch's large CPU tensors: a training step should not spend its time in page faults.

torch allocates CPU tensors with malloc, and glibc serves every block above its mmap threshold (at most
32 MB) with a fresh mmap and unmaps it on free. A training step allocates and frees hundreds of MB
(activations, logits, gradients), so every step touches brand-new memory, one page fault per 4 KB page.
Measured on the 全唐诗 preset (2 cores): ~240,000 faults per step, about half of its time.

glibc's tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35) makes malloc ask for transparent huge pages
(madvise), 2 MB each: 1/512 of the faults, and freed memory still goes back to the system. glibc reads
tunables when a process starts, so `python -m core.train` and `python -m core.bench` start themselves once
more with it set (same process id, same arguments and file descriptors) before doing anything else.
POEMTUI_HUGEPAGES=0, or a GLIBC_TUNABLES that already names the tunable, leaves the process as it is.

(Keeping freed memory in the heap instead, mallopt(M_MMAP_MAX, 0), was as fast but fragmented: peak RSS
of the preset's training grew past 4 GB.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_wanted() -> bool:
    """Linux with transparent huge pages available, not turned off, not already set."""
    if not sys.platform.startswith("linux") or os.environ.get("POEMTUI_HUGEPAGES", "1") == "0":
        return False
    if TUNABLE in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        return "[never]" not in THP_MODE.read_text()
    except OSError:
        return False


def restart_with_huge_pages() -> None:
    """exec this command line again with GLIBC_TUNABLES naming glibc.malloc.hugetlb=1 (once: the new
    process finds it set). Call first thing in a program's `if __name__ == "__main__"`, never in a library
    (it replaces the running process)."""
    if not huge_pages_wanted():
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [tunables, f"{TUNABLE}=1"])))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # cannot exec (odd sandboxes): run as we are
        return
