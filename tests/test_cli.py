"""The tests' command runner (tests/conftest.py: run_cli) runs what `python -m core.<command>` runs, and
leaves this process as it found it. Each command's own tests use it; each also has one subprocess smoke
test (test_train, test_evaluate, test_sample, test_gradcheck, test_bench, test_corpus_cli, test_gelv_cli,
test_experiments, test_judge, test_inspect, test_runs_compare, test_native for core.lstm)."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import COMMANDS, Hang, ProcessStateChanged, assert_user_error, run_cli


def main_block_call(command: str) -> ast.Call:
    """The `run(main, ...)` call in the `if __name__ == "__main__":` block of `python -m core.<command>`."""
    spec = importlib.util.find_spec(f"core.{command}")
    path = Path(spec.origin)
    if path.name == "__init__.py":
        path = path.with_name("__main__.py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call) and ast.unparse(inner.func) == "run":
                    return inner
    raise AssertionError(f"core.{command}: no run(main) under `if __name__ == '__main__'`")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_runner_calls_what_the_command_runs(command):
    module_name, needs_torch = COMMANDS[command]
    call = main_block_call(command)
    assert ast.unparse(call.args[0]) == "main"
    package = importlib.util.find_spec(f"core.{command}").submodule_search_locations is not None
    assert module_name == (f"core.{command}.__main__" if package else f"core.{command}")
    flags = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert flags.get("needs_torch", True) is needs_torch


def test_every_command_module_is_in_the_table():
    """A new `python -m core.X` (a module with run(main) under __main__) gets a row, and so its tests."""
    core = Path(__file__).resolve().parents[1] / "core"
    found = set()
    for path in core.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "__main__" in text and "run(main" in text:
            rel = path.relative_to(core.parent).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__main__" else rel.parts
            found.add(".".join(parts[1:]))
    assert found == set(COMMANDS)


def test_the_runner_puts_back_what_a_command_changes(tmp_path):
    """core.train installs SIGINT/SIGTERM/SIGHUP handlers; experiments sets OMP_NUM_THREADS; init sets
    threads."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
    handlers = [signal.getsignal(s) for s in signals]
    env, threads = dict(os.environ), torch.get_num_threads()
    assert_user_error(run_cli("train", "--corpus", "songci", "--checkpoints", tmp_path), "songci")
    out = run_cli("experiments", "optimizers", "--budget-steps", "1", "--threads", "3", "--dry-run")
    assert out.status == 0, out.err
    assert [signal.getsignal(s) for s in signals] == handlers
    assert dict(os.environ) == env and torch.get_num_threads() == threads
    assert run_cli("corpus", "stats", "--corpus", "tang300", env={"POEMTUI_DATA": tmp_path}).status == 2
    assert dict(os.environ) == env


def test_a_command_that_would_change_malloc_stops_the_test(tmp_path):
    """Training that really starts calls keep_freed_memory (mallopt, torch's allocator): not in here."""
    with pytest.raises(ProcessStateChanged, match="cli_process"):
        run_cli("train", "--corpus", "tang300", "--hidden-size", "8", "--embed-size", "8", "--max-steps", "1",
                "--run-dir", tmp_path / "run")  # fmt: skip
    from core.training import memory

    assert memory.keep_freed_memory.__qualname__ == "keep_freed_memory"  # put back


def test_a_bug_is_exit_1_with_its_traceback(monkeypatch):
    """What core.cli.run does with an unexpected exception, seen through the runner."""
    import core.gelv.__main__ as gelv_main

    def broken(argv):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(gelv_main, "main", broken)
    out = run_cli("gelv", "x")
    assert out.status == 1 and "Traceback" in out.err and "internal error: ZeroDivisionError: boom" in out.err


def test_a_command_that_hangs_fails_the_test(monkeypatch):
    """A blocked in-process command is stopped by the runner's timeout, not left to block the suite."""
    import core.gelv.__main__ as gelv_main

    monkeypatch.setattr(gelv_main, "main", lambda argv: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(Hang, match=r"core\.gelv x: still running after 1 s"):
        run_cli("gelv", "x", timeout=1)
    assert time.monotonic() - started < 10 and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
