"""core.memory: training processes restart themselves once with glibc's huge-page tunable."""

import os
import subprocess
import sys

import pytest

from core import memory

PROGRAM = (
    "import os, core.memory as m; m.restart_with_huge_pages(); "
    "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'))"
)

linux_with_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not memory.THP_MODE.exists(), reason="Linux with THP only"
)


def run(env_changes: dict) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "POEMTUI_HUGEPAGES")}
    env.update(env_changes)
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    pid, tunables = out.split(maxsplit=1)
    assert int(pid) == proc.pid  # exec: the same process, not a child
    return proc.pid, tunables.strip()


@linux_with_thp
def test_the_process_restarts_once_with_the_tunable_set():
    if "[never]" in memory.THP_MODE.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    _, tunables = run({})
    assert tunables == "glibc.malloc.hugetlb=1"


@linux_with_thp
def test_other_tunables_are_kept():
    if "[never]" in memory.THP_MODE.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    _, tunables = run({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert tunables == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_poemtui_hugepages_0_leaves_the_process_alone():
    _, tunables = run({"POEMTUI_HUGEPAGES": "0"})
    assert tunables == "None"


def test_a_tunable_set_by_the_user_is_not_overridden():
    _, tunables = run({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert tunables == "glibc.malloc.hugetlb=0"
