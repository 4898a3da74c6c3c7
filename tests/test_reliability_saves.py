"""Saves are atomic and durable, a full disk harms nothing, retention saves before it deletes (issue 8, 3-4).

The kill test SIGKILLs a real saver (tests/reliability_child.py: core.runs.checkpoint.save_checkpoint, then
atomic_link for last and best, then retention, with a PoetryLM of hidden size 64: 4.4 MB files) 30 times,
and more until 20 saves have completed: every other time at a random moment, the others just after a temp
file shows a write under way (after a completed save in that round, so that saves accumulate); after every
kill every checkpoint present loads. The full-disk tests use a real tmpfs of a few
MiB (root only; elsewhere a real RLIMIT_FSIZE in a subprocess, or a skip).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from core.errors import CheckpointError
from core.runs import atomic, folder
from core.runs import checkpoint as ck
from core.runs.atomic import TMP_PREFIX
from core.runs.checkpoint import EXT, load_checkpoint, read_meta

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("reliability_child.py")
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
KILLS = 30  # rounds at least; more while fewer than MIN_SAVES saves have completed (a busy machine)
MIN_SAVES, MAX_ROUNDS = 20, 90
TINY_ARGS = ["--corpus", "tang300", "--embed-size", "32", "--hidden-size", "32", "--num-layers", "1"]
TINY_ARGS += ["--batch-size", "16", "--patience", "0", "--sample-on-eval", "false"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, much faster on a shared 2-core machine; results do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real(short_run_checkpoint) -> ck.Checkpoint:
    """A real checkpoint (3 steps of a tiny model on tang300), loaded."""
    return load_checkpoint(short_run_checkpoint)


def temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX))


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


# --- 3. killed at random moments ----------------------------------------------------------------------------


def saved(run: Path) -> set[str]:
    """The checkpoint files a finished save left (temp files aside)."""
    return {n for n in os.listdir(run) if n.startswith("rnn_") and n.endswith(EXT)} if run.exists() else set()


def wait_for_a_write(run: Path, before: set[str], timeout: float = 30) -> None:
    """Until a save finished in this round and the next one is writing (a temp file is there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if saved(run) - before and temps(run):
            return
        time.sleep(0.0005)


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    run = tmp_path / "run"
    zygote = subprocess.Popen(
        [sys.executable, str(CHILD), "saver", str(run)],
        cwd=REPO,
        env=SUBPROCESS_ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(2019)
    last_step, cut_mid_write, steps_seen = 0, 0, set()
    verified: dict[str, tuple] = {}  # name -> (inode, size, mtime) of a file that loaded after a kill
    kill = -1
    try:
        while (kill := kill + 1) < KILLS or last_step < MIN_SAVES:
            if kill >= MAX_ROUNDS:
                pytest.fail(f"only {last_step} saves completed in {kill} rounds")
            before = saved(run)
            zygote.stdin.write("fork\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            if kill % 2:
                wait_for_a_write(run, before)
                time.sleep(rng.uniform(0, 0.005))
            else:
                time.sleep(rng.uniform(0.03, 0.3))
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline().split()[1])
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            assert killed, "the saver stopped by itself"

            left = temps(run) if run.exists() else []
            cut_mid_write += bool(left)
            # the killed writer's temp file at most: the next save removed those of earlier ones
            assert len(left) <= 1, left
            assert all(not n.endswith(EXT) for n in left)  # a `*.safetensors` glob never sees one
            listed = folder.list_checkpoints(run) if run.exists() else []
            assert not any(atomic.is_temp(p) for p in listed)
            for path in listed:  # every checkpoint present loads, checksum and all
                st = path.stat()
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if verified.get(path.name) == key:
                    continue  # the very file that loaded after an earlier kill, untouched since
                ckpt = load_checkpoint(path)
                steps_seen.add(ckpt.meta["progress"]["step"])
                verified[path.name] = key
            if (run / f"last{EXT}").exists():
                step = read_meta(run / f"last{EXT}")["progress"]["step"]
                assert step >= last_step, "last went back in time"
                last_step = step
            elif kill >= 5:
                pytest.fail(f"no last{EXT} after {kill + 1} rounds of saving")
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    removed = atomic.clean_stale_temps(run)  # what the next run does first
    assert temps(run) == [] and len(removed) == len(left)
    assert last_step >= MIN_SAVES, "too few saves completed for the test to mean much"
    assert cut_mid_write >= 3, f"only {cut_mid_write} kills landed during a write"
    print(f"\nkills survived: {kill}; kills that cut a write short: {cut_mid_write}; saves: {last_step}")


def test_stale_temp_files_are_removed_only_when_their_writer_is_dead(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            "dead": f"{TMP_PREFIX}{dead.pid}-00000000-rnn_1_2_3.00_adam{EXT}.part",
            "alive": f"{TMP_PREFIX}{sleeper.pid}-00000000-last{EXT}.part",
            "mine": atomic.temp_path(tmp_path / f"best{EXT}").name,
            "old-style": f"{TMP_PREFIX}{dead.pid}-rnn_1_1_9.00_adam{EXT}",  # before the .part suffix
            "not-a-temp": f"rnn_1_1_9.00_adam{EXT}",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        listed = {p.name for p in folder.list_checkpoints(tmp_path)}
        assert listed == {names["not-a-temp"]}
        removed = {p.name for p in atomic.clean_stale_temps(tmp_path)}
        assert removed == {names["dead"], names["old-style"]}
        assert sorted(os.listdir(tmp_path)) == sorted([names["alive"], names["mine"], names["not-a-temp"]])
    finally:
        sleeper.kill()
        sleeper.wait()


# --- 3b. a full disk ----------------------------------------------------------------------------------------


def mount_tmpfs(where: Path, size_bytes: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    size = f"size={(size_bytes + 4095) // 4096 * 4}k"
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(where)], capture_output=True)
    except OSError:
        return False
    return out.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a folder on a real tmpfs of that size, or None when mounting is not permitted."""
    mounted = []

    def mount(size_bytes: int) -> Path | None:
        where = tmp_path / f"disk{len(mounted)}"
        if not mount_tmpfs(where, size_bytes):
            return None
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def checksums(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(f"*{EXT}"))}


def test_full_disk_during_a_save_leaves_the_previous_checkpoints_intact(real, small_disk, tmp_path):
    tensors, meta = real.tensors, real.meta
    size = len(ck.encode_checkpoint(tensors, meta))
    disk = small_disk(int(2.5 * size))  # room for two checkpoints, not three
    if disk is None:
        return full_disk_by_file_size_limit(real, tmp_path)
    ck.save_checkpoint(disk / "rnn_1_1_10.00_adam.safetensors", tensors, meta)
    atomic.atomic_link(disk / "rnn_1_1_10.00_adam.safetensors", disk / f"last{EXT}")
    ck.save_checkpoint(disk / "rnn_1_2_9.00_adam.safetensors", tensors, meta)
    atomic.atomic_link(disk / "rnn_1_2_9.00_adam.safetensors", disk / f"last{EXT}")
    before = checksums(disk)
    with pytest.raises(CheckpointError) as exc:
        ck.save_checkpoint(disk / "rnn_1_3_8.00_adam.safetensors", tensors, meta)
    message = str(exc.value)
    assert_one_line(message)
    assert "No space left on device" in message and "previous checkpoints are intact" in message
    assert checksums(disk) == before and temps(disk) == []
    for name in before:
        load_checkpoint(disk / name)
    assert os.path.samefile(disk / f"last{EXT}", disk / "rnn_1_2_9.00_adam.safetensors")


FSIZE_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from core.runs import checkpoint as ck
    from core.errors import CheckpointError
    folder, real = Path(sys.argv[1]), ck.load_checkpoint(sys.argv[2])
    ck.save_checkpoint(folder / "a.safetensors", real.tensors, real.meta)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    limit = (folder / "a.safetensors").stat().st_size // 2
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        ck.save_checkpoint(folder / "b.safetensors", real.tensors, real.meta)
        print(json.dumps({"error": None}))
    except CheckpointError as exc:
        print(json.dumps({"error": str(exc)}))
    """
)


def full_disk_by_file_size_limit(real: ck.Checkpoint, tmp_path: Path) -> None:
    """Without root: the same write failure from a real kernel limit (RLIMIT_FSIZE) in a subprocess."""
    folder = tmp_path / "fsize"
    folder.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", FSIZE_CHILD, str(folder), str(real.path)],
        cwd=REPO,
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    message = json.loads(out.stdout)["error"]
    assert message and "File too large" in message and "previous checkpoints are intact" in message
    assert_one_line(message)
    assert sorted(os.listdir(folder)) == ["a.safetensors"]
    load_checkpoint(folder / "a.safetensors")


def checkpoint_bytes(vocab: int, embed: int, hidden: int) -> int:
    """Weights, Adam's two moments, and a header (vocabulary and settings) of well under 200 KB."""
    params = vocab * embed + 4 * hidden * (embed + hidden + 1) + vocab * hidden + vocab
    return 3 * 4 * params + 200_000


def test_full_disk_during_training_stops_in_one_line_and_deletes_nothing(small_disk):
    """keep=1 on a disk with room for one checkpoint: the second save fails. Had retention deleted the
    first checkpoint to make room before saving, nothing would be left; it saves first, so it is."""
    from core.corpus import load_corpus

    vocab = len(load_corpus("tang300").build_vocab())
    disk = small_disk(int(1.5 * checkpoint_bytes(vocab, 32, 32)))
    if disk is None:
        pytest.skip("mounting a tmpfs needs root (the save-level test above covers a failed write)")
    run = disk / "run"
    # the command in this process, malloc left alone (POEMTUI_KEEP_MEMORY=0: nothing else changes)
    out = run_cli(
        "train", *TINY_ARGS, "--eval-every", "2", "--max-steps", "8", "--keep", "1", "--run-dir", run,
        "--events", "jsonl", env={"POEMTUI_KEEP_MEMORY": "0"},
    )  # fmt: skip
    assert out.status == 2, out.err
    assert_one_line(out.err)
    assert "No space left on device" in out.err and "previous checkpoints are intact" in out.err
    events = [json.loads(line) for line in out.out.splitlines()]
    saves = [e for e in events if e["event"] == "checkpoint"]
    assert len(saves) == 1 and saves[0]["step"] == 2 and events[-1]["event"] == "error"
    assert temps(run) == []
    assert sorted(p.name for p in run.glob(f"rnn_*{EXT}")) == [Path(saves[0]["path"]).name]
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == 2
    load_checkpoint(run / f"last{EXT}")


# --- 4. retention -------------------------------------------------------------------------------------------


def test_retention_keeps_the_newest_k_and_the_best_after_every_save(tmp_path):
    from engine_fixtures import tiny_config

    from core.training.trainer import Trainer

    run = tmp_path / "run"
    saves: list[str] = []
    best: list[str] = []

    def on_event(event):
        if event["event"] != "checkpoint":  # emitted after the save, the pointers and retention
            return
        saves.append(Path(event["path"]).name)
        if event["best"]:
            best.append(saves[-1])
        present = {p.name for p in run.glob(f"rnn_*{EXT}")}
        assert present == set(saves[-2:]) | {best[-1]}, (present, saves, best)
        assert os.path.samefile(run / f"last{EXT}", run / saves[-1])
        assert os.path.samefile(run / f"best{EXT}", run / best[-1])

    cfg = tiny_config(keep=2, eval_every=2, max_steps=14, sample_on_eval=False, lr=0.05)
    Trainer.new(cfg, run, on_event=on_event).run()
    assert len(saves) >= 6
    for path in folder.list_checkpoints(run):
        load_checkpoint(path)


def test_a_checkpoint_that_could_not_be_loaded_is_never_written(real, tmp_path):
    """NaN weights, or an optimizer state that does not fit: refused before the write; last unchanged."""
    ck.save_checkpoint(tmp_path / "good.safetensors", real.tensors, real.meta)
    atomic.atomic_link(tmp_path / "good.safetensors", tmp_path / f"last{EXT}")
    before = checksums(tmp_path)
    nan = dict(real.tensors)
    nan["model.head.bias"] = nan["model.head.bias"].clone()
    nan["model.head.bias"][7] = float("nan")
    lost = {k: v for k, v in real.tensors.items() if k != "optim.1.exp_avg_sq"}
    for tensors, needle in ((nan, "NaN"), (lost, "optimizer")):
        with pytest.raises(CheckpointError) as exc:
            ck.save_checkpoint(tmp_path / "bad.safetensors", tensors, real.meta)
        assert_one_line(str(exc.value))
        assert needle in str(exc.value) and "not saved" in str(exc.value)
    assert checksums(tmp_path) == before and temps(tmp_path) == []
