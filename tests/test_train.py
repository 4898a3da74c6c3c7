"""Training on the real tang300 corpus: learning, exact resume, events, and the command line."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from conftest import assert_user_error
from engine_fixtures import tiny_config, train_tiny

from core.runs.checkpoint import load_checkpoint, read_meta
from core.training.settings import TrainConfig
from core.training.trainer import Trainer


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
# Signals (Ctrl-C / SIGTERM save a final checkpoint and exit 130 / 143) are tested on real processes in
# tests/test_reliability_training.py: mid-epoch, during an evaluation and during a save.


def test_cli_trains_and_writes_metrics(tmp_path, cli_process):
    """The subprocess smoke test of `python -m core.train`."""
    run = tmp_path / "cli"
    out = cli_process(
        "train",
        *("--corpus", "tang300", "--hidden-size", "32", "--embed-size", "32", "--num-layers", "1"),
        *(
            "--batch-size",
            "32",
            "--max-steps",
            "6",
            "--eval-every",
            "3",
            "--run-dir",
            run,
            "--events",
            "jsonl",
        ),
    )
    assert out.status == 0, out.err
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["status"] == "max_steps"
    stored = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert stored == lines
    assert (run / "best.safetensors").exists() and (run / "last.safetensors").exists()


def test_cli_help(cli):
    out = cli("train", "--help")
    assert out.status == 0 and "--optimizer" in out.out and "--resume" in out.out


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
def test_cli_user_mistakes_exit_2_in_one_line(cli, tmp_path, args, needle):
    assert_user_error(cli("train", *args, "--max-steps", "1", "--checkpoints", tmp_path), needle)
    assert list(tmp_path.iterdir()) == []  # refused before any run folder was made


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


def test_cosine_anneals_over_the_minutes_when_they_end_first():
    """--max-minutes with a cosine schedule: the LR reaches its floor when the minutes run out, even if
    the epochs would last longer; without a time limit it is the step's function alone."""
    import torch

    from core.training.settings import TrainConfig
    from core.training.state import lr_scheduler

    clock = {"s": 0.0}
    param = torch.nn.Parameter(torch.zeros(1))

    def schedule(**settings):
        opt = torch.optim.SGD([param], lr=1.0)
        cfg = TrainConfig(lr_schedule="cosine", epochs=10, **settings)
        return opt, lr_scheduler(cfg, opt, steps_per_epoch=100, elapsed=lambda: clock["s"])

    opt, sched = schedule(max_minutes=1.0)
    opt.step()  # as the trainer does: an optimizer step, then the schedule's
    clock["s"] = 30.0  # half the minutes, 1 % of the steps
    sched.step()
    assert abs(opt.param_groups[0]["lr"] - (0.01 + 0.99 * 0.5)) < 1e-9
    clock["s"] = 90.0  # past the minutes: the floor
    sched.step()
    assert abs(opt.param_groups[0]["lr"] - 0.01) < 1e-9
    opt, sched = schedule()  # no time limit: the clock is ignored
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] > 0.99
