"""End to end in a real terminal: `python -m poemtui` in tmux (100×30), driven with send-keys, read with
capture-pane. First run -> quick start on the real tang300 corpus -> live updates -> stop -> the checkpoint in
the browser -> a poem from it -> quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


class Terminal:
    """One tmux server of our own (its own socket), so no user session is touched."""

    def __init__(self, name: str):
        self.socket = f"poemtui-test-{os.getpid()}-{name}"
        self.target = f"{name}:0"
        self.name = name

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check)

    def start(self, command: str, size: tuple[int, int]) -> None:
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), command)
        # a detached session may still start at the server's default size (80×24) on some tmux versions
        self.tmux("resize-window", "-t", self.target, "-x", str(size[0]), "-y", str(size[1]), check=False)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", self.target, *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        out = self.tmux("capture-pane", "-p", "-t", self.target, check=False)
        return out.stdout

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.name, check=False).returncode == 0

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear within {timeout:.0f}s; the screen:\n{self.screen()}")

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        folder = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)


@pytest.fixture
def terminal():
    term = Terminal("poemtui")
    yield term
    term.close()


def test_first_run_train_stop_browse_write_in_a_real_terminal(terminal, tmp_path):
    root = tmp_path / "checkpoints"
    # (one OpenMP thread for the training child: two spinning threads crawl on a busy 2-core machine)
    env = f"PYTHONPATH={REPO} TERM=xterm-256color COLORTERM=truecolor OMP_NUM_THREADS=1"
    terminal.start(f"cd {REPO} && env {env} {sys.executable} -m poemtui --checkpoints {root}", size=(100, 30))

    terminal.wait_for("Welcome to poemtui", timeout=90)
    terminal.keys("q")  # quick start: the first-run offer
    terminal.wait_for("● training", timeout=60)
    screen = terminal.wait_for("tokens/s", timeout=60)
    assert "epoch" in screen and "ETA" in screen

    # Stopped during its first epoch (evaluations, sample poems and their checkpoints are watched under
    # Pilot, tests/test_tui.py): the stop saves last.safetensors, which the browser lists and writes with.
    terminal.keys("s")
    terminal.wait_for("Stop training?")
    terminal.keys("y")
    terminal.wait_for("stopped by you", timeout=120)
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "last.safetensors").exists()

    terminal.keys("C-o")
    terminal.wait_for("sorted by dev perplexity", timeout=30)
    screen = terminal.wait_for("in 1 run", timeout=30)
    assert runs[0].name in screen and "unreadable" not in screen and "last" in screen

    terminal.keys("Enter")
    terminal.wait_for("writing with", timeout=60)
    terminal.keys("月", literal=True)
    terminal.keys("Enter")
    # The poem is complete when the session's figures count it (above the poems: the stop's notification
    # may cover the right part of the poem's rows for a few seconds; what it covers is left out below).
    screen = terminal.wait_for("1 poems", timeout=60)
    poem_lines = [line.strip() for line in screen.splitlines() if line.strip().startswith("月")]
    assert poem_lines and "，" in poem_lines[0], screen
    # Under each row of the poem, its tones (○ 平 ● 仄), one mark under each two-cell character.
    rows = screen.splitlines()
    at = next(i for i, line in enumerate(rows) if line.strip().startswith("月"))
    poem, marks = rows[at], rows[at + 1]
    start = poem.index("月")
    # only the cells under the poem's line, up to a notification that may cover its right part
    marks = marks[start : start + 2 * len(poem.strip())].split("▌")[0]
    assert set(marks.strip()) <= set("○●◐？◎ ") and marks[0] != " ", screen

    terminal.keys("C-q")
    deadline = time.monotonic() + 30
    while terminal.alive() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not terminal.alive(), "ctrl+q should close the app"


def test_compare_fine_tune_and_inspect_by_keys_in_a_real_terminal(terminal, tmp_path):
    """space marks two runs, c compares them; f opens the form to fine-tune; i inspects a poem;
    esc goes back each time, ctrl+q quits: no traceback."""
    sys.path.insert(0, str(REPO / "tests"))
    from run_fixtures import build_run

    root = tmp_path / "checkpoints"
    build_run(root, "adam", [900.0, 650.0], speed=1.5, optimizer="adam")
    build_run(root, "sgd", [1400.0, 1200.0], speed=1.0, optimizer="sgd", lr=None)
    env = f"PYTHONPATH={REPO} TERM=xterm-256color COLORTERM=truecolor OMP_NUM_THREADS=1"
    terminal.start(  # (Textual draws on stderr: a traceback would be on the screen after the app)
        f"cd {REPO} && env {env} {sys.executable} -m poemtui --checkpoints {root}; echo EXIT=$?; sleep 30",
        size=(120, 36),
    )
    terminal.wait_for("sorted by dev perplexity", timeout=90)
    terminal.wait_for("4 checkpoints in 2 runs under", timeout=30)
    terminal.keys("Space")  # adam's best (rows by perplexity: adam 650, adam 900, sgd 1200, sgd 1400)
    terminal.keys("Down")
    terminal.keys("Space")  # sgd
    terminal.wait_for("marked (c compares)", timeout=10)
    terminal.keys("c")
    screen = terminal.wait_for("Δ ppl", timeout=30)
    assert "dev perplexity" in screen and "training loss" in screen and "optimizer" in screen
    assert "(baseline)" in screen
    terminal.keys("x")
    terminal.wait_for("tokens seen", timeout=10)
    terminal.keys("Escape")
    terminal.wait_for("sorted by dev perplexity", timeout=10)

    terminal.keys("Up")
    terminal.keys("f")
    screen = terminal.wait_for("Fine-tuning", timeout=30)
    assert "Start from" in screen
    terminal.keys("C-o")
    terminal.wait_for("sorted by dev perplexity", timeout=10)

    terminal.keys("i")
    # the panel's parts come as they are computed: wait for each (the pane is resized to 120×36)
    terminal.wait_for("Units that track", timeout=90)
    terminal.wait_for("predicted", timeout=30)
    screen = terminal.wait_for("perplexity", timeout=30)
    assert "Units that track" in screen and "predicted" in screen, screen
    terminal.keys("Right")
    terminal.wait_for("2/24", timeout=10)
    terminal.keys("Escape")
    terminal.wait_for("sorted by dev perplexity", timeout=10)

    terminal.keys("C-q")
    screen = terminal.wait_for("EXIT=", timeout=30)
    assert "EXIT=0" in screen and "Traceback" not in screen, screen
