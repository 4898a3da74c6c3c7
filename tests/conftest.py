"""Shared fixtures: the real corpora (fetched by `make test` / .ci/run), loaded once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_python(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python args...` in a real subprocess from the repository root, as a user would run it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def python_subprocess():
    """run_python, for tests: `python_subprocess("-c", code)`."""
    return run_python


@pytest.fixture
def corpus_cli():
    """`python -m core.corpus ...` in a real subprocess."""

    def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return run_python("-m", "core.corpus", *args, env=env, timeout=timeout)

    return run
