"""One writer per run folder (reliability, second round, class 1).

A run folder has one writer: an flock on <run>/.lock, held by the training process and dropped by the
kernel however that process ends; a second writer is refused in one line. A new run never adopts a folder
that holds another run (metrics.jsonl or checkpoints): `--resume` is the only way to continue one. The
concurrency tests use real processes (two `core.train` at once, a lock holder killed with SIGKILL); the
rest run the command in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CliResult, assert_user_error, run_cli, start_cli_process
from engine_fixtures import tiny_config

from core.errors import PoemError
from core.runs.checkpoint import EXT, load_checkpoint, read_meta
from core.runs.folder import LOCK, RunFolder
from core.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = ["--corpus", "tang300", "--embed-size", "16", "--hidden-size", "16", "--num-layers", "1"]
TINY += ["--batch-size", "16", "--eval-every", "0", "--sample-on-eval", "false", "--seed", "7"]


NO_MALLOC = {"POEMTUI_KEEP_MEMORY": "0"}  # in process: malloc left alone (conftest.run_cli)


def train(*argv: str) -> CliResult:
    """`python -m core.train argv` in this process (conftest.run_cli)."""
    return run_cli("train", *argv, env=NO_MALLOC)


def assert_trained(result: CliResult) -> None:
    assert result.status == 0, result.err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_new_run_never_adopts_a_folder_holding_another_run(tmp_path):
    """Another run's metrics.jsonl or checkpoints: refused before anything is read or written."""
    logged = tmp_path / "logged"
    logged.mkdir()
    (logged / "metrics.jsonl").write_text('{"event": "batch", "step": 1}\n', encoding="utf-8")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / f"rnn_1_3_500.00_adam{EXT}").write_bytes(b"another run's weights")
    for folder, what in ((logged, "metrics.jsonl"), (saved, "1 checkpoint")):
        before = snapshot(folder)
        result = train(*TINY, "--max-steps", "1", "--run-dir", folder)
        assert_user_error(result, "holds another run", what, "--resume", "--run-dir")
        assert snapshot(folder) == before  # not even a lock file


def test_an_empty_or_unrelated_folder_is_fine(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    (run / "metrics.jsonl").write_text("", encoding="utf-8")  # empty: no run logged anything
    assert_trained(train(*TINY, "--max-steps", "1", "--run-dir", run, "--quiet"))
    assert (run / f"last{EXT}").exists() and (run / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_resume_continues_its_own_folder_and_refuses_another_runs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for run in (first, second):
        assert_trained(train(*TINY, "--max-steps", "1", "--run-dir", run, "--quiet"))
    before = snapshot(second)
    resume = ["--resume", str(first / f"last{EXT}"), "--max-steps", "2", "--quiet"]
    assert_user_error(train(*resume, "--run-dir", second), "holds another run", "--resume")
    assert snapshot(second) == before
    assert_trained(train(*resume))  # its own folder: the way to continue
    assert read_meta(first / f"last{EXT}")["progress"]["step"] == 2
    assert_trained(
        train(*resume, "--run-dir", tmp_path / "fresh")
    )  # a new, empty folder may continue a run too


def test_the_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path):
    """A real process holds the lock; this one is refused, naming it; SIGKILL frees it (no stale lock)."""
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from core.runs.folder import RunFolder; run = RunFolder(sys.argv[1]); "
            "run.claim(); print('held', flush=True); time.sleep(120)",
            str(run),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PoemError) as exc:
            RunFolder(run).claim()
        assert "in use" in str(exc.value) and f"pid {holder.pid}" in str(exc.value)
        holder.kill()
        holder.wait(timeout=30)
        mine = RunFolder(run)
        mine.claim()  # the kernel dropped the dead writer's lock
        assert (run / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(PoemError, match="in use"):
            RunFolder(run).claim()  # a second claim in the same process is refused too
        mine.release()
        RunFolder(run).claim()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def train_process(run: Path, *extra: str) -> subprocess.Popen:
    return start_cli_process("train", *TINY, "--run-dir", run, "--events", "jsonl", *extra, text=True)


def test_two_trainings_started_at_once_in_one_folder_one_is_refused(tmp_path):
    """Both `core.train` start together in the same --run-dir: one trains, the other exits 2 in one line;
    the folder holds one run (one `done`), and best and last are that run's."""
    run = tmp_path / "run"
    procs = [train_process(run, "--max-steps", "3", "--lr", lr) for lr in ("0.01", "0.002")]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [0, 2], results
    winner = next(r for r in results if r[0] == 0)
    loser = next(r for r in results if r[0] == 2)
    assert loser[1] == "" and len(loser[2].strip().splitlines()) == 1, loser
    assert "in use" in loser[2] or "holds another run" in loser[2], loser
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in events].count("done") == 1
    assert events == [json.loads(line) for line in winner[1].splitlines()]  # only the winner wrote
    lr = next(e["lr"] for e in events if e["event"] == "batch")
    for pointer in ("best", "last"):
        ckpt = load_checkpoint(run / f"{pointer}{EXT}")
        assert ckpt.meta["train"]["lr"] == lr


def test_a_running_training_keeps_its_folder(tmp_path):
    """While a run trains, neither a new run nor a resume of it may write into its folder."""
    run = tmp_path / "run"
    proc = train_process(run, "--max-steps", "100000", "--eval-every", "2")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it has saved a checkpoint
            event = json.loads(proc.stdout.readline())
            if event["event"] == "checkpoint":
                break
        # the refused commands run in this process: the writer holding the lock is the other process
        assert_user_error(train(*TINY, "--run-dir", run), "holds another run")
        assert_user_error(train("--resume", run / f"last{EXT}", "--max-steps", "5"), "in use", str(proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 130
    load_checkpoint(run / f"last{EXT}")


def test_a_folder_removed_and_made_again_under_a_running_training_is_left_alone(tmp_path):
    """rm -rf of a run folder while it trains, then a new training in the same place: its claim succeeds (the
    old lock is on the removed .lock), so the old writer must see for itself that the folder is no longer its
    own: its next save stops it in one line, and the new run's files are untouched (not overwritten, not
    pruned by the old run's retention)."""
    run = tmp_path / "run"
    theirs = "rnn_1_1_500.00_adam.safetensors"
    newcomer: list[RunFolder] = []

    def replace_the_folder(event):
        if event["event"] == "checkpoint" and not newcomer:
            shutil.rmtree(run)
            run.mkdir()
            newcomer.append(RunFolder(run))
            newcomer[0].claim()
            (run / theirs).write_bytes(b"the new run's checkpoint")

    trainer = Trainer.new(tiny_config(max_steps=8, eval_every=2, keep=1), run, on_event=replace_the_folder)
    try:
        with pytest.raises(PoemError, match="removed or replaced while this run wrote to it"):
            trainer.run()
        assert sorted(os.listdir(run)) == [LOCK, theirs]
        assert (run / theirs).read_bytes() == b"the new run's checkpoint"
    finally:
        newcomer[0].release()
