"""Launching an experiment's runs (each `python -m core.train` in its own folder, one after another or a few
at once), the lock that keeps two experiments out of one folder, and the summary of what a run did."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import signal
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import PoemError
from core.experiments.runs import (
    FINISHED,
    RunSpec,
    argv_for,
    clear_run,
    experiment_dir,
    read_record,
    run_state,
    write_record,
)
from core.runs.metrics import read_events

_CHILDREN: set[subprocess.Popen] = set()  # the core.train processes running now (to stop them together)


# --- launching ---------------------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    """One run an experiment still needs, for whoever launches it (core.experiments, or the workbench).

    `argv` is the `python -m core.train` command; call `prepare()` just before starting it and
    `finished(returncode, message)` when it has exited, so that the bookkeeping is the same whoever
    launches: a fresh start clears what a killed run left, the run's settings are recorded (a later plan
    with other settings is refused), and a run that failed for good (exit 2) is skipped afterwards."""

    spec: RunSpec
    state: str  # "start" or "resume"

    @property
    def argv(self) -> list[str]:
        argv = argv_for(self.spec, self.state)
        assert argv is not None
        return argv

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir

    def prepare(self) -> None:
        if self.state == "start":
            clear_run(self.spec)
        write_record(self.spec, failed=None)

    def finished(self, returncode: int, message: str = "") -> None:
        if returncode == 2:  # a user-level failure (e.g. diverged): rerunning would do the same
            tail = _last_line(self.spec.run_dir / "stderr.txt")
            write_record(self.spec, failed=message or tail or "core.train exited with status 2")


def launch(spec: RunSpec, state: str, on_event: Callable[[dict], None] | None = None) -> dict:
    """Run one child `core.train` to the end; returns {"returncode", "message"}.

    Ctrl-C reaches the child too (same process group): it saves a checkpoint and exits 130; we then stop
    the whole experiment, and the next invocation resumes this run.
    """
    planned = PlannedRun(spec, state)
    planned.prepare()
    argv = planned.argv
    with open(spec.run_dir / "stderr.txt", "a", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [*argv, "--events", "jsonl"], stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8"
        )
        _CHILDREN.add(proc)
        message = ""
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "error":
                    message = event.get("message", "")
                if on_event is not None:
                    on_event(event)
            proc.wait()
        finally:
            if proc.poll() is None:  # we were interrupted: let the child save, then wait for it
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _CHILDREN.discard(proc)
    if proc.returncode in (130, 143, -signal.SIGINT, -signal.SIGTERM):
        raise KeyboardInterrupt
    planned.finished(proc.returncode, message)
    if proc.returncode not in (0, 2):
        tail = _last_line(spec.run_dir / "stderr.txt")
        message = message or tail or f"core.train exited with status {proc.returncode}"
    return {"returncode": proc.returncode, "message": message}


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_all(
    specs: list[RunSpec],
    *,
    fresh: bool = False,
    jobs: int = 1,
    on_event: Callable[[RunSpec, dict], None] | None = None,
    on_state: Callable[[RunSpec, str], None] | None = None,
) -> list[dict]:
    """Bring every run to its budget, `jobs` at a time; then summarise each from its metrics.jsonl."""
    launched: dict[str, dict] = {}
    with exclusive({spec.run_dir.parent for spec in specs}):
        if fresh:
            for spec in specs:
                clear_run(spec)
        todo = []
        for spec in specs:
            state = run_state(spec)
            if on_state is not None:
                on_state(spec, state)
            if state in ("start", "resume"):
                callback = (lambda e, s=spec: on_event(s, e)) if on_event is not None else None
                todo.append((spec, state, callback))
        if jobs <= 1:
            for spec, state, callback in todo:
                launched[spec.name] = launch(spec, state, callback)
        else:
            launched = launch_parallel(todo, jobs)
    return [summarize(spec, launched.get(spec.name)) for spec in specs]


def launch_parallel(todo: list, jobs: int) -> dict[str, dict]:
    """Several children at once (one thread each reads its events); an interrupt stops them all."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    launched = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(launch, *item): item[0] for item in todo}
        try:
            for future in as_completed(futures):
                launched[futures[future].name] = future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            for proc in list(_CHILDREN):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # each saves a checkpoint; its thread then ends
            raise
    return launched


def experiment_lock(checkpoints: Path, experiment: str, corpus: str):
    """The lock `python -m core.experiments` holds while it trains an experiment (a context manager)."""
    return exclusive({experiment_dir(checkpoints, experiment, corpus)})


@contextlib.contextmanager
def exclusive(folders):
    """Hold a lock on each experiment folder: two processes training the same runs would corrupt them."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(folders):
            folder.mkdir(parents=True, exist_ok=True)
            fh = stack.enter_context(open(folder / ".lock", "w"))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise PoemError(f"{folder} is in use by another experiment process; wait for it") from None
        yield


# --- summaries -------------------------------------------------------------------------------------------


def curve(events: list[dict]) -> list[dict]:
    """Dev perplexity per evaluated step; a step evaluated again after a resume keeps its latest value."""
    points: dict[int, dict] = {}
    for e in events:
        if e["event"] == "eval" and e.get("dev_ppl") is not None:
            points[e["step"]] = {
                "step": e["step"],
                "elapsed_s": round(e.get("elapsed_s", 0.0), 3),
                "dev_ppl": e["dev_ppl"],
                "dev_loss": e.get("dev_loss"),
                "train_loss": e.get("loss"),
                "lr": e.get("lr"),
            }
    return [points[s] for s in sorted(points)]


def summarize(spec: RunSpec, launched: dict | None = None) -> dict:
    """The numbers of one run for the table: best dev ppl and where, steps, time, speed, and its curve."""
    events = read_events(spec.run_dir)
    record = read_record(spec.run_dir)
    points = curve(events)
    done = next((e for e in reversed(events) if e["event"] == "done"), None)
    finished = bool(events) and events[-1]["event"] == "done" and events[-1].get("status") in FINISHED
    speeds = [e["tokens_per_s"] for e in events if e["event"] == "batch" and e.get("tokens_per_s")]
    progress = [e for e in events if e["event"] in ("batch", "done") and "elapsed_s" in e]
    latest = max(progress, key=lambda e: (e["step"], e["elapsed_s"])) if progress else None
    best = min(points, key=lambda p: p["dev_ppl"]) if points else None
    status = done.get("status") if finished and done else None
    if record.get("failed"):
        status = "failed"
    elif status is None:
        status = "incomplete"
    message = record.get("failed") or (launched or {}).get("message") or ""
    return {
        "name": spec.name,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "lr_source": spec.lr_source,
        "run_dir": str(spec.run_dir),
        "status": status,
        "message": message,
        "steps": latest["step"] if latest else 0,
        "elapsed_s": latest["elapsed_s"] if latest else 0.0,
        "tokens_seen": done.get("tokens_seen") if finished and done else None,
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "best_dev_ppl": best["dev_ppl"] if best else None,
        "best_step": best["step"] if best else None,
        "best_elapsed_s": best["elapsed_s"] if best else None,
        "final_dev_ppl": points[-1]["dev_ppl"] if points else None,
        "evaluations": len(points),
        "curve": points,
    }


def choose_lr(rows: list[dict]) -> dict | None:
    """The sweep's winner: the lowest best dev perplexity (ties: the smaller lr)."""
    good = [r for r in rows if r["best_dev_ppl"] is not None and math.isfinite(r["best_dev_ppl"])]
    if not good:
        return None
    return min(good, key=lambda r: (r["best_dev_ppl"], r["lr"]))
