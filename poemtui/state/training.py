"""The training child process (`python -m core.train --events jsonl`) and what the workbench knows of it.

Training runs in its own process so that the UI never competes with it for the GIL: the app reads one JSON
event per line from the child's stdout and folds it into a `RunState`. The state is plain data; screens
render it when they are shown and when the app tells them it changed. Nothing here imports textual.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import core

REPO_ROOT = Path(core.__file__).resolve().parent.parent

# Statuses of a run while its process lives, then the trainer's own `done` statuses, or "failed".
LIVE_STATUSES = ("starting", "running", "stopping")
DONE_TEXT = {
    "finished": "finished: every epoch done",
    "early_stopped": "stopped early: dev perplexity stopped improving",
    "time_limit": "stopped at the time limit",
    "max_steps": "stopped at the step limit",
    "interrupted": "stopped by you: checkpoint saved",
    "terminated": "terminated: checkpoint saved",
}
MAX_LOSS_POINTS = 20_000  # per-batch losses kept for the chart (a long run thins them)


@dataclass
class RunState:
    """Everything the live screen shows, built from the trainer's events alone (a replay shows the same)."""

    run_dir: Path
    resume: Path | None = None
    series: str = ""  # its place in a sequence of runs, e.g. "optimizers-tang300, run 2 of 8"
    status: str = "starting"
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    step: int = 0
    max_steps: int | None = None  # the run's step budget (`--max-steps`, as experiments set it), if any
    loss: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    dev_loss: float | None = None
    dev_ppl: float | None = None
    best_dev_ppl: float | None = None
    sample: str | None = None
    sample_at: str = ""
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss)
    evals: list[dict] = field(default_factory=list)
    last_checkpoint: dict | None = None
    best_checkpoint: str | None = None
    done: dict | None = None
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None
    exit_code: int | None = None
    version: int = 0  # bumps with every change, so a view can skip redrawing what it already shows
    _session_start: tuple[int, float] | None = None  # (step, elapsed) at this session's first batch

    # --- folding events in ------------------------------------------------------------------------------

    def apply(self, event: dict) -> None:
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)
            self.version += 1

    def _on_batch(self, e: dict) -> None:
        if self.status == "starting":
            self.status = "running"
        self.epoch, self.epochs = e["epoch"], e["epochs"]
        self.batch, self.batches, self.step = e["batch"], e["batches"], e["step"]
        self.max_steps = e.get("max_steps") or None  # null (or absent, in older logs): no step limit
        self.loss, self.lr, self.tokens_per_s = e["loss"], e["lr"], e["tokens_per_s"]
        self.elapsed_s = e["elapsed_s"]
        if self._session_start is None:
            self._session_start = (self.step - 1, self.elapsed_s)
        if math.isfinite(self.loss):
            self.losses.append((self.step, self.loss))
            if len(self.losses) > MAX_LOSS_POINTS:
                self.losses = self.losses[::2]

    def _on_eval(self, e: dict) -> None:
        self.evals.append(e)
        self.dev_loss, self.dev_ppl = e.get("dev_loss"), e.get("dev_ppl")
        self.best_dev_ppl = e.get("best_dev_ppl", self.best_dev_ppl)
        self.lr = e.get("lr", self.lr)
        self.elapsed_s = e.get("elapsed_s", self.elapsed_s)
        if e.get("sample"):
            self.sample = e["sample"]
            self.sample_at = f"epoch {e['epoch']}, batch {e['batch']}"

    def _on_checkpoint(self, e: dict) -> None:
        self.last_checkpoint = e
        if e.get("best"):
            self.best_checkpoint = e["path"]

    def _on_done(self, e: dict) -> None:
        self.done = e
        self.status = e.get("status", "finished")
        self.elapsed_s = e.get("elapsed_s", self.elapsed_s)
        if e.get("best_dev_ppl") is not None:
            self.best_dev_ppl = e["best_dev_ppl"]

    def _on_error(self, e: dict) -> None:
        self.warnings.append(e.get("message", "error"))

    def process_exited(self, code: int, stderr_tail: list[str]) -> None:
        """The child is gone: a run without a `done` event failed, and says why."""
        self.exit_code = code
        if self.done is None:
            self.status = "failed"
            self.failure = explain_failure(code, stderr_tail, self.warnings)
        self.version += 1

    # --- what the screens show ----------------------------------------------------------------------------

    @property
    def latest_path(self) -> str | None:
        """The checkpoint to write with after this run: its best, else its last."""
        done = self.done or {}
        return (
            done.get("best_path")
            or self.best_checkpoint
            or done.get("last_path")
            or (self.last_checkpoint or {}).get("path")
        )

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def step_limited(self) -> bool:
        """Does the step budget end the run before its epochs do?"""
        return self.max_steps is not None and (
            not self.batches or self.max_steps < self.epochs * self.batches
        )

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.batches
        return min(total, self.max_steps) if self.step_limited and total and self.max_steps else total

    @property
    def steps_done(self) -> int:
        if self.step_limited:
            return min(self.step, self.total_steps)
        return max(0, (self.epoch - 1) * self.batches + self.batch)

    def eta_s(self) -> float | None:
        """Time to the last epoch at this session's pace (evaluations aside; early stopping may be sooner)."""
        if self._session_start is None or not self.live:
            return None
        step0, t0 = self._session_start
        steps, seconds = self.step - step0, self.elapsed_s - t0
        if steps < 2 or seconds <= 0:
            return None
        return max(0, self.total_steps - self.steps_done) * seconds / steps

    def status_line(self) -> str:
        if self.status == "starting":
            return "starting: loading the corpus and building the model…"
        if self.status == "running":
            return "training"
        if self.status == "stopping":
            return "stopping: saving a checkpoint of the current state…"
        if self.status == "failed":
            return f"failed: {self.failure}"
        return DONE_TEXT.get(self.status, self.status)


def explain_failure(code: int, stderr_tail: list[str], warnings: list[str]) -> str:
    """One line for a run that ended without a `done` event (a refused setting, a crash, a kill)."""
    lines = [line.strip() for line in stderr_tail if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    if warnings:
        return warnings[-1]
    if code < 0:
        return f"the training process was killed by signal {-code}"
    if lines:
        return f"the training process exited with status {code}: {lines[-1]}"
    return f"the training process exited with status {code}"


def train_command(
    python: str, run_dir: Path, options: dict[str, object], resume: Path | None = None
) -> list[str]:
    """The child's command line: `core.train` flags are TrainConfig's fields in kebab-case."""
    cmd = [python, "-m", "core.train", "--events", "jsonl", "--run-dir", str(run_dir)]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    for name, value in options.items():
        if value is None:
            continue
        cmd += ["--" + name.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    return cmd


def command_target(argv: list[str]) -> tuple[Path, Path | None]:
    """(run folder, checkpoint resumed or None) of a `core.train` command line, as core.train decides them.

    For a command the workbench did not build itself (an experiment's plan); what the run does once started
    (its epochs, batches, step budget) comes from its events, not from its command line."""
    if "--resume" in argv:
        resume = Path(argv[argv.index("--resume") + 1])
        if "--run-dir" in argv:
            return Path(argv[argv.index("--run-dir") + 1]), resume
        return resume.parent, resume
    return Path(argv[argv.index("--run-dir") + 1]), None


@dataclass(frozen=True)
class Launch:
    """One training child to start: its `core.train --events jsonl` command, its run folder, the checkpoint
    it resumes (if any) and its place in a sequence of runs (e.g. "optimizers-tang300, run 2 of 8")."""

    command: list[str]
    run_dir: Path
    resume: Path | None = None
    series: str = ""

    @classmethod
    def of_command(cls, argv: list[str], series: str = "") -> Launch:
        """A `core.train` command line built elsewhere; `--events jsonl` is added when it is missing."""
        run_dir, resume = command_target(argv)
        command = argv if "--events" in argv else [*argv, "--events", "jsonl"]
        return cls(command, run_dir, resume, series)

    def new_state(self) -> RunState:
        """A fresh RunState for this launch (what the Live screen shows once it starts)."""
        return RunState(run_dir=self.run_dir, resume=self.resume, series=self.series)


class TrainingJob:
    """Runs one training child process and feeds its events to `state` and to `on_change(kind)`."""

    STDERR_LINES = 40

    def __init__(self, state: RunState, command: list[str], on_change: Callable[[str], None]):
        self.state = state
        self.command = command
        self.on_change = on_change
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=self.STDERR_LINES)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def run(self) -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # `core` must import in the child even when poemtui runs from a checkout that is not installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=1 << 22,  # bytes per line: an event with a long sample poem still fits
            )
        except OSError as exc:
            self.state.process_exited(
                -1, [f"error: could not start {self.command[0]}: {exc.strerror or exc}"]
            )
            self.on_change("exit")
            return -1
        try:
            await asyncio.gather(self._read_events(), self._read_stderr())
            code = await self.process.wait()
        finally:
            if self.alive:  # the app is closing under a running child: let it save, then make sure it ends
                await self.shutdown()
        self.state.process_exited(code, list(self.stderr_tail))
        self.on_change("exit")
        return code

    async def _read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
                continue
            if isinstance(event, dict):
                self.state.apply(event)
                self.on_change(str(event.get("event")))

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def stop(self) -> None:
        """Ask the trainer to stop: it saves a checkpoint, reports `done` (interrupted) and exits."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGINT)
            if self.state.live:
                self.state.status = "stopping"
                self.state.version += 1
                self.on_change("stopping")

    async def shutdown(self, grace_s: float = 20.0) -> None:
        """Stop and wait for the child (it saves a checkpoint first); kill it if it does not end in time."""
        if not self.alive:
            return
        assert self.process is not None
        self.stop()
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
