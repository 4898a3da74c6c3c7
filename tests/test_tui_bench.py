"""`python -m poemtui.bench --rounds 1 --steps 3` end to end: both runs train, and the figures are printed.

(Three steps of the quick preset and the evaluation that ends a run, not the benchmark's three epochs: the
test checks that the benchmark runs and reports, not the figures themselves.)"""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two real training runs of the quick preset, one under the workbench


def test_tui_bench_prints_its_figures():
    done = subprocess.run(
        [sys.executable, "-m", "poemtui.bench", "--rounds", "1", "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=900,
        # One OpenMP thread per training process: on a busy 2-core machine two spinning threads crawl. (The
        # figures the README reports come from a run with the default threads, on a quiet machine.)
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"TUI/CLI wall-clock tokens/s: \d+\.\d+", done.stdout), done.stdout
    pattern = r"event-loop lag while training: p95 ([\d.]+) ms, max (\d+) ms \((\d+) ticks"
    lag = re.search(pattern, done.stdout)
    assert lag and int(lag[3]) > 10, done.stdout
    assert float(lag[1]) <= float(lag[2]) + 1
