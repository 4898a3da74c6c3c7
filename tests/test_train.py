"""Training on the real tang300 corpus: learning, exact resume, events, and the CLI as a subprocess."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_fixtures import tiny_config, train_tiny

from core.runs.checkpoint import load_checkpoint, read_meta
from core.training.settings import TrainConfig
from core.training.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "core.train", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_a_few_dozen_steps_lower_the_loss(tmp_path):
    events = []
    trainer = Trainer.new(tiny_config(epochs=3, eval_every=0), tmp_path / "run", on_event=events.append)
    before = trainer.evaluate_dev()["dev_loss"]
    summary = trainer.run()
    losses = [e["loss"] for e in events if e["event"] == "batch"]
    assert summary["step"] == len(losses) >= 36
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    after = trainer.evaluate_dev()["dev_loss"]
    assert after < before - 0.5, (before, after)
    assert math.isclose(before, math.log(len(trainer.vocab)), rel_tol=0.05)  # untrained: about uniform


def test_events_follow_the_contract(tmp_path):
    events = []
    train_tiny(tmp_path / "run", events, max_steps=10)
    kinds = [e["event"] for e in events]
    assert set(kinds) <= {"batch", "eval", "checkpoint", "done", "error"}
    assert kinds[-1] == "done" and kinds.count("done") == 1
    batch = next(e for e in events if e["event"] == "batch")
    assert {"epoch", "batch", "step", "loss", "lr", "tokens_per_s", "elapsed_s"} <= set(batch)
    ev = next(e for e in events if e["event"] == "eval")
    assert {"dev_loss", "dev_ppl", "step", "sample"} <= set(ev)
    assert math.isclose(ev["dev_ppl"], math.exp(ev["dev_loss"]), rel_tol=1e-9)
    ck = next(e for e in events if e["event"] == "checkpoint")
    assert os.path.basename(ck["path"]).startswith("rnn_1_")
    # the same lines were written to metrics.jsonl by the CLI path only; here the callback got them all
    for e in events:
        json.dumps(e, allow_nan=False)


def test_checkpoint_names_pointers_and_retention(tmp_path):
    run = tmp_path / "run"
    summary = train_tiny(run, epochs=2, eval_every=3, keep=2)
    names = sorted(p.name for p in run.glob("rnn_*.safetensors"))
    best = read_meta(run / "best.safetensors")
    last = read_meta(run / "last.safetensors")
    assert summary["best_path"] and os.path.exists(summary["best_path"])
    assert os.path.basename(summary["best_path"]) in names  # retention never deletes the best
    assert len(names) <= 3  # the newest 2 and the best
    assert last["progress"]["step"] == summary["step"]
    assert best["progress"]["best_dev_ppl"] == pytest.approx(summary["best_dev_ppl"])
    epoch, batch, ppl, opt = names[0][len("rnn_") : -len(".safetensors")].split("_")
    assert opt == "adam" and float(ppl) > 1 and int(epoch) >= 1 and int(batch) >= 1
    assert not list(run.glob(".tmp-*"))


def _weights(path):
    return load_checkpoint(path).model_state


@pytest.mark.parametrize(
    "n_first, unk_rate, seq_mode", [(5, 0.0, "poem"), (13, 0.3, "poem"), (9, 0.3, "mixed")]
)
def test_resume_equals_one_uninterrupted_run(tmp_path, n_first, unk_rate, seq_mode):
    total = 20
    one_events, two_events = [], []
    common = dict(epochs=3, eval_every=6, lr_patience=0, unk_rate=unk_rate, seq_mode=seq_mode, seq_len=48)
    train_tiny(tmp_path / "one", one_events, max_steps=total, **common)
    train_tiny(tmp_path / "two", two_events, max_steps=n_first, **common)
    train_tiny(tmp_path / "two", two_events, resume=tmp_path / "two" / "last.safetensors", max_steps=total)

    def batches(events, key):
        return [e[key] for e in events if e["event"] == "batch"]

    assert batches(one_events, "step") == batches(two_events, "step") == list(range(1, total + 1))
    assert batches(one_events, "loss") == pytest.approx(batches(two_events, "loss"), abs=1e-6)
    a, b = _weights(tmp_path / "one" / "last.safetensors"), _weights(tmp_path / "two" / "last.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)
    ma, mb = (
        read_meta(tmp_path / "one" / "last.safetensors"),
        read_meta(tmp_path / "two" / "last.safetensors"),
    )
    for key in ("best_dev_ppl", "bad_evals", "evals", "epoch", "batch", "step", "tokens_seen"):
        assert ma["progress"][key] == pytest.approx(mb["progress"][key]), key
    assert ma["scheduler"] == mb["scheduler"]


def test_zero_learning_rate_is_refused():
    assert "lr" in TrainConfig.problems({**tiny_config().to_dict(), "lr": 0})
    assert "dropout" in TrainConfig.problems({**tiny_config().to_dict(), "dropout": 1.5})
    assert TrainConfig.problems(tiny_config().to_dict()) == {}


# --- the command line ---------------------------------------------------------------------------------------


def test_cli_trains_and_writes_metrics(tmp_path):
    run = tmp_path / "cli"
    out = run_cli(
        "--corpus",
        "tang300",
        "--hidden-size",
        "32",
        "--embed-size",
        "32",
        "--num-layers",
        "1",
        "--batch-size",
        "32",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--run-dir",
        str(run),
        "--events",
        "jsonl",
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["status"] == "max_steps"
    stored = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert stored == lines
    assert (run / "best.safetensors").exists() and (run / "last.safetensors").exists()


def test_cli_help():
    out = run_cli("--help")
    assert out.returncode == 0 and "--optimizer" in out.stdout and "--resume" in out.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "fast"], "--lr"),
        (["--optimizer", "lion"], "--optimizer"),
        (["--batch-size", "0"], "batch-size"),
        (["--corpus", "/nonexistent/poems.txt"], "poems.txt"),
        (["--corpus", "songci"], "songci"),
    ],
)
def test_cli_user_mistakes_exit_2_in_one_line(args, needle):
    out = run_cli(*args, "--max-steps", "1")
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_final_checkpoint(tmp_path, sig, status):
    run = tmp_path / "sig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.train",
            "--corpus",
            "tang300",
            "--hidden-size",
            "32",
            "--embed-size",
            "32",
            "--num-layers",
            "1",
            "--batch-size",
            "8",
            "--epochs",
            "50",
            "--run-dir",
            str(run),
            "--events",
            "jsonl",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    for line in proc.stdout:
        if (json.loads(line)["event"] == "batch" and json.loads(line)["step"] >= 3) or time.time() > deadline:
            break
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    done = json.loads(rest.splitlines()[-1])
    assert done["event"] == "done" and done["status"] in ("interrupted", "terminated")
    meta = read_meta(run / "last.safetensors")
    assert meta["progress"]["step"] == done["step"]
    load_checkpoint(run / "last.safetensors")


def test_numpy_backend_trains_resumes_and_its_checkpoint_generates(tmp_path):
    from core.generation.sampler import Sampler
    from core.generation.settings import SampleSettings

    events = []
    summary = train_tiny(tmp_path / "np", events, backend="numpy", max_steps=6, eval_every=3)
    assert summary["step"] == 6
    losses = [e["loss"] for e in events if e["event"] == "batch"]
    assert all(math.isfinite(x) for x in losses)
    meta = read_meta(tmp_path / "np" / "last.safetensors")
    assert meta["backend"] == "numpy" and meta["optimizer"]["state"]["numpy"]["steps"] == 6
    more = train_tiny(tmp_path / "np", resume=tmp_path / "np" / "last.safetensors", max_steps=9)
    assert more["step"] == 9
    poem = Sampler.from_checkpoint(tmp_path / "np" / "last.safetensors").generate(SampleSettings(seed=1))[0]
    assert poem.text.endswith("。")


def test_numpy_and_torch_backends_take_the_same_first_steps(tmp_path):
    """Same seed, same initial weights, same batches, no dropout: the two backends agree step by step."""
    runs = {}
    for backend in ("torch", "numpy"):
        events = []
        train_tiny(
            tmp_path / backend,
            events,
            backend=backend,
            dropout=0.0,
            max_steps=5,
            eval_every=0,
            sample_on_eval=False,
        )
        runs[backend] = [e["loss"] for e in events if e["event"] == "batch"]
    assert runs["torch"] == pytest.approx(runs["numpy"], rel=1e-4)
