"""Stops that must not lose the run (reliability, second round, class 2).

Real `core.train` processes and real signals: two SIGINTs 50 ms apart save and say so; a third signal
aborts, saying so, and leaves only complete files; the reader of `--events jsonl` closing its pipe (the
workbench dying) makes the run save and stop with a line in metrics.jsonl and on stderr (exit 141). In
process: a stop's evaluation counts for `best` like any other.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import time
from pathlib import Path

from conftest import start_cli_process
from engine_fixtures import tiny_config

from core.runs.atomic import TMP_PREFIX
from core.runs.checkpoint import EXT, load_checkpoint, read_meta
from core.runs.folder import list_checkpoints
from core.training.trainer import Trainer

TINY = ["--corpus", "tang300", "--embed-size", "16", "--hidden-size", "16", "--num-layers", "1"]
TINY += ["--batch-size", "16", "--sample-on-eval", "false", "--seed", "7", "--max-steps", "100000"]


def start(run: Path, *extra: str) -> subprocess.Popen:
    """A real `python -m core.train` (conftest.start_cli_process): the signals are the point."""
    return start_cli_process("train", *TINY, "--run-dir", run, "--events", "jsonl", *extra)


def wait_for_step(proc: subprocess.Popen, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()
        event = json.loads(line)
        if event["event"] == "batch" and event["step"] >= step:
            return
    raise TimeoutError(f"no step {step}")


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def assert_complete_files(run: Path) -> None:
    assert not [n for n in os.listdir(run) if n.startswith(TMP_PREFIX)]
    for path in list_checkpoints(run):
        load_checkpoint(path)


def test_two_sigints_50ms_apart_at_step_2_save_and_say_so(tmp_path):
    run = tmp_path / "run"
    proc = start(run)
    wait_for_step(proc, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "SIGINT again" in err and "Traceback" not in err, err
    done = events(run)[-1]
    assert done["event"] == "done" and done["status"] == "interrupted" and done["step"] >= 2
    last = read_meta(run / f"last{EXT}")["progress"]
    assert last["step"] == done["step"]  # the final checkpoint was saved
    assert_complete_files(run)


def test_sighup_saves_like_sigterm(tmp_path):
    """A closed terminal sends SIGHUP: the run saves and exits 129 (it died at once, unsaved, before)."""
    run = tmp_path / "run"
    proc = start(run)
    wait_for_step(proc, 2)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err.decode()
    done = events(run)[-1]
    assert done["status"] == "hangup" and read_meta(run / f"last{EXT}")["progress"]["step"] == done["step"]
    assert_complete_files(run)


def test_a_third_signal_aborts_saying_so_and_leaves_complete_files(tmp_path):
    run = tmp_path / "run"
    proc = start(run, "--eval-every", "2")
    wait_for_step(proc, 3)  # a checkpoint at step 2 exists
    # SIGTERM every 10 ms until it says it aborts: signals that arrive before Python's handler runs reach it
    # as one call (three SIGTERMs 2 ms apart were two on a loaded machine, and the run stopped cleanly),
    # while the stop under way (a batch, an evaluation, a save) takes longer than a few handler calls
    said, deadline = b"", time.monotonic() + 60
    while b"aborted without" not in said and proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM)
        if select.select([proc.stderr], [], [], 0.01)[0]:
            said += os.read(proc.stderr.fileno(), 65536)
    _, err = proc.communicate(timeout=120)
    err = (said + err).decode()
    assert "SIGTERM again" in err, err
    assert proc.returncode == 143, err
    assert "a third time: aborted without a final checkpoint" in err and "Traceback" not in err, err
    assert f"last{EXT}" in err  # it says which checkpoint is the run's last
    assert read_meta(run / f"last{EXT}")["progress"]["step"] >= 2
    assert_complete_files(run)


def test_a_closed_events_pipe_saves_and_stops_with_a_line(tmp_path):
    """The workbench dies: its end of the events pipe closes. The run must not die silently unsaved."""
    run = tmp_path / "run"
    proc = start(run)
    wait_for_step(proc, 2)
    proc.stdout.close()  # the reader goes away; the child's next event write fails with EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert proc.returncode == 141, err
    assert len(err.strip().splitlines()) == 1 and "went away" in err and "Traceback" not in err, err
    logged = events(run)
    gone = [e for e in logged if e["event"] == "error" and e.get("reader_gone") == "stdout"]
    assert len(gone) == 1 and "went away" in gone[0]["message"]
    assert logged[-1]["event"] == "done" and logged[-1]["status"] == "reader_gone"
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == logged[-1]["step"]
    assert_complete_files(run)


def test_a_stop_evaluation_counts_for_best(tmp_path):
    """A stop's evaluation that beats every earlier one makes `best` point at its checkpoint, and the done
    event reports it (it had reported the older best, with `best` on the older checkpoint)."""
    run, log = tmp_path / "run", []
    trainer = Trainer.new(tiny_config(eval_every=3, max_steps=100, sample_on_eval=False, lr=0.02), run)

    def on_event(event):
        log.append(event)
        if event["event"] == "batch" and event["step"] == 5:
            trainer.stop.set("terminated")  # what SIGTERM does

    trainer.on_event = on_event
    summary = trainer.run()
    evals = [e for e in log if e["event"] == "eval"]
    assert [e["scheduled"] for e in evals] == [True, False] and summary["status"] == "terminated"
    final = evals[-1]["dev_ppl"]
    assert math.isfinite(final) and final < evals[0]["dev_ppl"], "the run should still be improving"
    assert summary["best_dev_ppl"] == final == min(e["dev_ppl"] for e in evals)
    assert os.path.samefile(run / f"best{EXT}", run / f"last{EXT}")
    assert read_meta(run / f"best{EXT}")["progress"]["best_dev_ppl"] == final
    assert log[-1]["event"] == "done" and log[-1]["best_dev_ppl"] == final
