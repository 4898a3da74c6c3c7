"""What the tests share: the real corpora, one way to run a command, and one torch thread.

- `tang300`, `quantangshi`: the real corpora (fetched by `make test` / .ci/run), loaded once per session.
- Small real training runs on tang300, trained once per session: tests/engine_fixtures.py.
- The app under Pilot: waiting for it and reading its screen as text, tests/pilot_helpers.py.
- Commands. `cli("evaluate", CKPT, "--json")` runs `python -m core.evaluate CKPT --json` in this process,
  through core.cli.run exactly as the command's `__main__` does, and returns a CliResult (status, out, err):
  no new interpreter, no second of `import torch`. Error paths, JSON shapes and figures use it.
  `cli_process(...)`, same arguments and result, starts a real `python -m core.<command>`: one smoke test
  per command, and the tests that are about processes (signals, kills, start-up checks, two processes).
  `start_cli_process(...)` is the Popen for tests that talk to a running command.
- One torch thread (OMP_NUM_THREADS=1, inherited by every subprocess): the tests' models are tiny, and on a
  shared 2-core machine a second OpenMP thread makes each small op wait at a barrier for a descheduled
  thread (a (2, 2265) softmax took 15 ms instead of 0.1 ms: 30x slower sampling). With `pytest -n 2` each
  worker has its core. Set OMP_NUM_THREADS yourself to test with more.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Before torch is imported (tests/engine_fixtures.py imports it): torch reads it once, at start-up.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]

# small real training runs shared by the engine tests (tests/engine_fixtures.py)
pytest_plugins = ["engine_fixtures"]


@pytest.fixture(scope="session")
def tang300():
    from core.corpus import load_corpus

    return load_corpus("tang300")


@pytest.fixture(scope="session")
def quantangshi():
    from core.corpus import load_corpus

    return load_corpus("quantangshi")


# --- commands ------------------------------------------------------------------------------------------

# command -> (the module whose main() `python -m core.<command>` runs, whether its __main__ passes
# needs_torch to core.cli.run); tests/test_cli.py checks this table against the modules' __main__ blocks
COMMANDS = {
    "train": ("core.train", True),
    "evaluate": ("core.evaluate", True),
    "generate": ("core.generate", True),
    "gradcheck": ("core.gradcheck", True),
    "bench": ("core.bench.__main__", True),
    "experiments": ("core.experiments.__main__", True),
    "corpus": ("core.corpus.__main__", False),
    "gelv": ("core.gelv.__main__", False),
    "judge": ("core.judge", True),
    "inspect": ("core.inspect.__main__", True),
    "runs": ("core.runs.__main__", True),
}


@dataclass
class CliResult:
    """What a command did: its exit status and everything it wrote."""

    argv: list[str]
    status: int
    out: str
    err: str
    in_process: bool = field(default=True, repr=False)

    def json(self) -> dict:
        """The one JSON object a successful `--json` command prints on stdout (DESIGN.md §2)."""
        assert self.status == 0, (self.argv, self.status, self.err[-3000:])
        assert self.out.endswith("\n") and self.out.count("\n") == 1, f"not one JSON line: {self.out[:500]!r}"
        return json.loads(self.out)


class ProcessStateChanged(BaseException):
    """An in-process command reached code that changes the whole process (not an Exception: core.cli.run
    must not turn it into exit status 1)."""


def _guard(keep_freed_memory):
    """keep_freed_memory as the command calls it in this process: with POEMTUI_KEEP_MEMORY=0 (a setting
    the engine documents: malloc left as it is) it returns False as always; otherwise the test stops."""

    def guarded():
        if os.environ.get("POEMTUI_KEEP_MEMORY") == "0":
            return keep_freed_memory()
        raise ProcessStateChanged(
            "core.training.memory.keep_freed_memory changes malloc for the whole process: run this "
            "command with cli_process, or in process with env={'POEMTUI_KEEP_MEMORY': '0'}"
        )

    return guarded


class Hang(BaseException):
    """An in-process command ran past its timeout (a read that blocks, a loop that never ends): SIGALRM
    raises it where the command is, and the test fails instead of blocking the suite. Not an Exception,
    so that core.cli.run does not turn it into exit status 1."""


def run_cli(
    command: str, *args, env: dict | None = None, stdin: str | None = None, timeout: int = 300
) -> CliResult:
    """`python -m core.<command> args` in this process: main(argv) through core.cli.run (the exit status it
    raises, one line for a user mistake, a traceback and status 1 for a bug), with stdout and stderr
    captured. What a command changes in the process is put back afterwards: the SIGINT/SIGTERM/SIGHUP
    handlers (core.train installs its own), os.environ (experiments sets OMP_NUM_THREADS), torch's thread
    count.
    Malloc settings cannot be put back: a command that would change them (core.train's or core.bench's
    keep_freed_memory, reached once training really starts) stops the test, unless env sets
    POEMTUI_KEEP_MEMORY=0 (the engine's own switch: malloc left alone; nothing else changes); the
    subprocess smoke tests run with the real setting.

    env: variables to set (None: remove) while it runs; stdin: the text it reads; timeout: seconds before
    the command is stopped by SIGALRM and the test fails (Hang), as run_cli_process's timeout would."""
    import torch

    from core import cli
    from core.training import memory

    module_name, needs_torch = COMMANDS[command]
    module = importlib.import_module(module_name)
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    handlers = {
        s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
    }
    threads = torch.get_num_threads()
    patched = [(m, m.keep_freed_memory) for m in (memory, module) if hasattr(m, "keep_freed_memory")]
    saved_stdin = sys.stdin
    status = None
    try:
        for m, original in patched:
            m.keep_freed_memory = _guard(original)
        for key, value in (env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)

        def ring(_signum, _frame):
            raise Hang(f"core.{command} {' '.join(argv)}: still running after {timeout} s")

        signal.signal(signal.SIGALRM, ring)
        signal.alarm(timeout)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.run(module.main, argv, needs_torch=needs_torch)
            except SystemExit as exc:  # cli.run always ends this way
                code = exc.code
                if code is None or isinstance(code, int):
                    status = code or 0
                else:  # sys.exit("message"): Python prints it and exits 1
                    print(code, file=sys.stderr)
                    status = 1
    finally:
        signal.alarm(0)
        sys.stdin = saved_stdin
        for m, original in patched:
            m.keep_freed_memory = original
        os.environ.clear()
        os.environ.update(saved_env)
        for s, handler in handlers.items():
            signal.signal(s, handler)
        torch.set_num_threads(threads)
    assert status is not None, "core.cli.run returned without an exit status"
    return CliResult(argv, status, out.getvalue(), err.getvalue())


def run_python(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python args...` in a real subprocess from the repository root, as a user would run it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli_process(command: str, *args, env: dict | None = None, timeout: float = 300) -> CliResult:
    """`python -m core.<command> args` in a real subprocess (a new interpreter: imports, __main__, exit)."""
    argv = [str(a) for a in args]
    proc = run_python("-m", f"core.{command}", *argv, env=env, timeout=timeout)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr, in_process=False)


def start_cli_process(command: str, *args, env: dict | None = None, text: bool = False) -> subprocess.Popen:
    """A running `python -m core.<command> args`, stdout and stderr piped (signal and kill tests). SIGHUP
    starts at its default even when the suite runs under nohup (which would have the child ignore it, as
    core.train rightly does then)."""
    return subprocess.Popen(
        [sys.executable, "-m", f"core.{command}", *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )


def assert_user_error(result: CliResult, *fragments: str, after_progress: bool = False) -> str:
    """Exit 2, nothing on stdout, and one line on stderr (no traceback) holding every fragment; with
    after_progress, lines saying what the command was doing may come first. Returns the line."""
    assert result.status == 2, (result.argv, result.status, result.err[-3000:])
    lines = result.err.strip().splitlines()
    assert lines, result.argv
    assert len(lines) == 1 or (after_progress and not any("error" in line for line in lines[:-1])), lines
    assert "Traceback" not in result.err and "error" in lines[-1], result.err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    assert result.out == "", result.out
    return lines[-1]


@pytest.fixture
def cli():
    """run_cli, for tests: `cli("generate", ckpt, "--start", "山")` -> CliResult."""
    return run_cli


@pytest.fixture
def cli_process():
    """run_cli_process, for tests: a real `python -m core.<command>` -> CliResult."""
    return run_cli_process


@pytest.fixture
def python_subprocess():
    """run_python, for tests: `python_subprocess("-c", code)`."""
    return run_python
