"""Exact resume across a SIGTERM, signals during evaluation and saves, numerical faults, corpus changes
(issue 8, items 5-8). Real training on tang300; the signal and kill tests run `python -m core.train` as real
processes (they are also the tests of Ctrl-C / SIGTERM: a final checkpoint, exit 130 / 143)."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli, start_cli_process
from engine_fixtures import tiny_config, train_tiny

from core.errors import CheckpointError, PoemError
from core.runs.atomic import TMP_PREFIX
from core.runs.checkpoint import EXT, load_checkpoint, read_meta
from core.runs.folder import list_checkpoints
from core.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--corpus", "tang300", "--embed-size", "32", "--hidden-size", "32", "--num-layers", "1"]
TINY_ARGS += ["--batch-size", "16", "--dropout", "0.1", "--seed", "7", "--sample-on-eval", "false"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, much faster on a shared 2-core machine; results do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


def temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX))


def all_checkpoints_load(run: Path) -> None:
    assert temps(run) == []
    for path in list_checkpoints(run):
        load_checkpoint(path)


def train_cli(*args: str) -> subprocess.Popen:
    """A running `python -m core.train args --events jsonl` (one torch thread: tests/conftest.py)."""
    return start_cli_process("train", *args, "--events", "jsonl")


class Events:
    """The JSON-lines events of a training child, read without read-ahead so that `pending` is exact."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.fd, self.buffer = proc, proc.stdout.fileno(), b""

    def pending(self) -> bool:
        """Has the child written an event we have not read yet?"""
        return b"\n" in self.buffer or bool(select.select([self.fd], [], [], 0)[0])

    def next(self, timeout: float = 120) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("no event from the training child")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def rest(self) -> list[dict]:
        out = []
        while (event := self.next()) is not None:
            out.append(event)
        return out


def stop_now(pid: int) -> None:
    """SIGSTOP, and wait until the child is really stopped (state T in /proc)."""
    os.kill(pid, signal.SIGSTOP)
    for _ in range(1000):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
            return
        time.sleep(0.001)
    raise AssertionError("the child did not stop")


# --- 5. exact resume across a SIGTERM in the middle of an epoch ---------------------------------------------

RESUME_ARGS = [*TINY_ARGS, "--lr", "0.2", "--eval-every", "3", "--lr-patience", "0", "--patience", "0"]
RESUME_ARGS += ["--epochs", "3", "--max-steps", "20"]


def metrics(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.mark.slow
def test_resume_after_sigterm_mid_epoch_equals_one_uninterrupted_run(tmp_path):
    """The stopped run is a real process (the signal); the uninterrupted run and the resume are the same
    command in this process (tests/conftest.py, run_cli)."""
    one, two = tmp_path / "one", tmp_path / "two"
    first = train_cli(*RESUME_ARGS, "--run-dir", str(two))
    events = Events(first)
    while (event := events.next())["event"] != "batch" or event["step"] < 13:
        pass  # after the evaluation at step 12, which made things worse and halved the LR
    first.send_signal(signal.SIGTERM)
    done = events.rest()[-1]
    assert first.wait(timeout=120) == 143, first.stderr.read().decode()
    assert done["status"] == "terminated" and 13 <= done["step"] < 16, done  # epoch 1 has 16 batches
    stopped = read_meta(two / f"last{EXT}")
    assert stopped["progress"]["step"] == done["step"] and stopped["progress"]["batch"] == done["step"]
    assert stopped["progress"]["bad_evals"] >= 1 and stopped["scheduler"]["_last_lr"] == [0.1]

    in_process = {"POEMTUI_KEEP_MEMORY": "0"}  # malloc left alone: the process is the test's
    second = run_cli("train", "--resume", two / f"last{EXT}", "--max-steps", "20", env=in_process)
    assert second.status == 0, second.err[-3000:]
    reference = run_cli("train", *RESUME_ARGS, "--run-dir", one, env=in_process)
    assert reference.status == 0, reference.err[-3000:]

    # the same batches in the same order, the same losses and learning rates, each step exactly once
    a, b = metrics(one, "batch"), metrics(two, "batch")
    assert [e["step"] for e in b] == list(range(1, 21)) == [e["step"] for e in a]
    for x, y in zip(a, b, strict=True):
        assert (x["epoch"], x["batch"], x["lr"]) == (y["epoch"], y["batch"], y["lr"])
        assert math.isclose(x["loss"], y["loss"], rel_tol=0, abs_tol=1e-6), (x, y)
    scheduled = [
        [(e["step"], e["dev_ppl"]) for e in metrics(r, "eval") if e["scheduled"]] for r in (one, two)
    ]
    assert scheduled[0] == pytest.approx(scheduled[1], rel=1e-9)

    ca, cb = load_checkpoint(one / f"last{EXT}"), load_checkpoint(two / f"last{EXT}")
    for name, tensor in ca.tensors.items():
        torch.testing.assert_close(
            tensor, cb.tensors[name], rtol=0, atol=1e-6, msg=name
        )  # weights, Adam, RNG
    assert set(ca.tensors) == set(cb.tensors)
    for key in (
        "best_dev_ppl",
        "bad_evals",
        "evals",
        "epoch",
        "batch",
        "step",
        "tokens_seen",
        "skipped_steps",
    ):
        assert ca.meta["progress"][key] == pytest.approx(cb.meta["progress"][key]), key
    assert ca.meta["scheduler"] == cb.meta["scheduler"] and ca.meta["rng"] == cb.meta["rng"]


def test_resume_after_sigkill_logs_each_step_once(tmp_path):
    """Killed outright after its checkpoint at step 6, the run had logged steps 7+ that it will train
    again: the resume drops them from metrics.jsonl (and a line torn by the kill) so each step is once."""
    run = tmp_path / "run"
    args = [*TINY_ARGS, "--eval-every", "6", "--max-steps", "12"]
    proc = train_cli(*args, "--run-dir", str(run))
    events = Events(proc)
    try:
        while (event := events.next())["event"] != "batch" or event["step"] < 8:
            pass
    finally:
        proc.kill()
    proc.wait(timeout=60)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as log:
        log.write('{"event": "batch", "ste')  # as if the kill had cut a line in half
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == 6
    # the resume in this process (malloc left alone): the killed run was the process that mattered
    again = run_cli(
        "train", "--resume", run / f"last{EXT}", "--max-steps", "12", "--events", "jsonl",
        env={"POEMTUI_KEEP_MEMORY": "0"},
    )  # fmt: skip
    assert again.status == 0, again.err
    assert [e["step"] for e in metrics(run, "batch")] == list(range(1, 13))
    assert [e["step"] for e in metrics(run, "eval")] == [6, 12]


# --- 6. signals during an evaluation and during a save ------------------------------------------------------


def test_sigint_during_evaluation_finishes_it_saves_and_exits_130(tmp_path):
    run = tmp_path / "run"
    proc = train_cli(*TINY_ARGS, "--eval-every", "4", "--epochs", "50", "--run-dir", str(run))
    events = Events(proc)
    hit = None
    try:
        while hit is None:
            event = events.next()
            if event["event"] == "batch" and event["step"] % 4 == 0 and event["step"] <= 40:
                stop_now(proc.pid)  # frozen just after announcing the batch that starts an evaluation
                if not events.pending():  # the eval event is not written yet: it is evaluating
                    hit = event["step"]
                    proc.send_signal(signal.SIGINT)
                os.kill(proc.pid, signal.SIGCONT)
    finally:
        if hit is None:
            proc.kill()
    after = events.rest()
    assert proc.wait(timeout=120) == 130, proc.stderr.read().decode()
    kinds = [(e["event"], e.get("step")) for e in after]
    assert kinds == [("eval", hit), ("checkpoint", hit), ("done", hit)], kinds
    assert after[0]["scheduled"] and after[-1]["status"] == "interrupted"
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == hit
    all_checkpoints_load(run)


def test_sigterm_during_a_save_finishes_it_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = train_cli(*TINY_ARGS, "--eval-every", "2", "--epochs", "50", "--run-dir", str(run))
    events = Events(proc)
    hit, attempts = None, 0
    try:
        while hit is None and attempts < 30:
            if events.next()["event"] != "eval":
                continue
            attempts += 1  # the save follows this eval event: poll until a temp file shows it writing
            while not events.pending():
                stop_now(proc.pid)
                writing = run.exists() and temps(run)
                if writing:
                    hit = writing
                    proc.send_signal(signal.SIGTERM)
                os.kill(proc.pid, signal.SIGCONT)
                if writing:
                    break
                time.sleep(0.001)
    finally:
        if hit is None:
            proc.kill()
    assert hit, f"no save caught in the act in {attempts} tries"
    after = events.rest()
    assert proc.wait(timeout=120) == 143, proc.stderr.read().decode()
    assert [e["event"] for e in after] == ["checkpoint", "done"], after
    assert after[-1]["status"] == "terminated" and after[0]["step"] == after[-1]["step"]
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == after[-1]["step"]
    all_checkpoints_load(run)
    print(f"\nsignal landed while writing {hit[0]} (try {attempts})")


# --- 7. numerical faults ------------------------------------------------------------------------------------


class Poison:
    """Injects faults into the model a trainer trains: NaN logits at chosen training attempts (a NaN loss),
    NaN gradients at others, NaN logits during chosen evaluations, and Inf weights from an attempt on."""

    def __init__(self, trainer: Trainer, loss=(), grad=(), evals=(), weights_from=None):
        self.trainer, self.loss, self.grad, self.evals, self.weights_from = (
            trainer,
            loss,
            grad,
            evals,
            weights_from,
        )
        self.attempt = 0
        model = trainer.model
        model.head.register_forward_pre_hook(self.before)
        model.head.register_forward_hook(self.after)
        model.head.bias.register_hook(self.gradient)

    def before(self, module, inputs):
        if module.training:
            self.attempt += 1
            if self.weights_from is not None and self.attempt >= self.weights_from:
                with torch.no_grad():
                    module.bias[0] = math.inf

    def after(self, module, inputs, output):
        poison = self.attempt in self.loss if module.training else self.trainer.progress.evals in self.evals
        return output * math.nan if poison else output

    def gradient(self, grad):
        return grad * math.nan if self.attempt in self.grad else grad


def weights_and_steps(trainer: Trainer) -> tuple[dict, list]:
    """The model's weights and the optimizer's per-parameter step counts, copied."""
    optimizer = trainer.backend.optimizer if hasattr(trainer, "backend") else trainer.optimizer
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return weights, [float(s["step"]) for s in optimizer.state.values()]


def test_nan_loss_or_gradient_steps_are_skipped_and_counted(tmp_path):
    events, snapshots = [], {}
    trainer = Trainer.new(tiny_config(max_steps=12, eval_every=0, sample_on_eval=False), tmp_path / "run")

    def on_event(event):
        events.append(event)
        if event["event"] in ("batch", "error"):
            snapshots[len(events) - 1] = weights_and_steps(trainer)

    trainer.on_event = on_event
    poison = Poison(trainer, loss={3, 7}, grad={5})
    summary = trainer.run()
    assert poison.attempt == 15 and summary["step"] == 12 and summary["skipped_steps"] == 3
    errors = [i for i, e in enumerate(events) if e["event"] == "error"]
    assert len(errors) == 3 and all("non-finite" in events[i]["message"] for i in errors)
    for i in errors:  # a skipped step changes neither the weights nor the optimizer
        before, after = snapshots[i - 1], snapshots[i]
        assert after[1] == before[1]
        for name in before[0]:
            assert torch.equal(before[0][name], after[0][name]), name
    steps = [e["step"] for e in events if e["event"] == "batch"]
    assert steps == list(range(1, 13))
    assert all(math.isfinite(e["loss"]) for e in events if e["event"] == "batch")
    meta = read_meta(tmp_path / "run" / f"last{EXT}")
    assert meta["progress"]["skipped_steps"] == 3 and meta["progress"]["batch"] == 15


def test_k_nonfinite_steps_in_a_row_stop_training_with_the_last_good_checkpoint(tmp_path):
    run, events = tmp_path / "run", []
    trainer = Trainer.new(
        tiny_config(eval_every=4, max_bad_steps=3, sample_on_eval=False), run, on_event=events.append
    )
    Poison(trainer, loss=set(range(7, 100)))
    with pytest.raises(PoemError) as exc:
        trainer.run()
    assert_one_line(str(exc.value))
    assert "3 non-finite steps in a row" in str(exc.value)
    assert events[-1]["event"] == "error" and events[-1]["message"] == str(exc.value)
    last = load_checkpoint(run / f"last{EXT}")  # loading checks that every weight is finite
    assert 4 <= last.meta["progress"]["step"] <= 6 and last.meta["progress"]["skipped_steps"] <= 3
    assert math.isfinite(read_meta(run / f"best{EXT}")["progress"]["best_dev_ppl"])
    all_checkpoints_load(run)


def test_a_nan_dev_perplexity_never_becomes_best(tmp_path):
    run, events = tmp_path / "run", []
    cfg = tiny_config(eval_every=3, max_steps=9, patience=0, sample_on_eval=False)
    trainer = Trainer.new(cfg, run, on_event=events.append)
    Poison(trainer, evals={0})  # the first evaluation's logits are NaN
    trainer.run()
    evals = [e for e in events if e["event"] == "eval" and e["scheduled"]]
    saves = [e for e in events if e["event"] == "checkpoint"]
    assert math.isnan(evals[0]["dev_ppl"]) and all(math.isfinite(e["dev_ppl"]) for e in evals[1:])
    assert evals[0]["best_dev_ppl"] is None and not saves[0]["best"]
    assert saves[1]["best"] and math.isfinite(saves[1]["dev_ppl"])
    best = read_meta(run / f"best{EXT}")["progress"]
    assert best["best_dev_ppl"] == min(e["dev_ppl"] for e in evals[1:])
    all_checkpoints_load(run)


def test_weights_gone_infinite_are_never_saved(tmp_path):
    """Inf weights (a diverged step): the steps are skipped; at the epoch's end the evaluation's save is
    refused, training stops in one line, and last is still the good checkpoint from before."""
    run, events = tmp_path / "run", []
    cfg = tiny_config(eval_every=8, max_bad_steps=100, sample_on_eval=False)
    trainer = Trainer.new(cfg, run, on_event=events.append)
    Poison(trainer, weights_from=12)  # 16 batches an epoch: 12..16 are skipped, then the epoch ends
    with pytest.raises(CheckpointError) as exc:
        trainer.run()
    assert_one_line(str(exc.value))
    assert "not saved" in str(exc.value) and "NaN or Inf" in str(exc.value)
    assert read_meta(run / f"last{EXT}")["progress"]["step"] == 8
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [8]
    all_checkpoints_load(run)


NAN_ARGS = ["--eval-every", "3", "--max-steps", "6", "--events", "jsonl"]


def test_the_error_that_ends_a_run_is_said_once(tmp_path, monkeypatch):
    """`python -m core.train` (in this process) whose training loss is always NaN: the skipped steps are
    warned of as they come, and the error that ends the run is on the console once (core.cli's exit line;
    the trainer's last event, marked fatal, stays in metrics.jsonl and --events jsonl, not on the console)."""
    from core.model import PoetryLM

    forward = PoetryLM.forward

    def nan_while_training(self, inputs, *args, **kwargs):
        logits, state = forward(self, inputs, *args, **kwargs)
        return (logits * float("nan") if self.training else logits), state

    monkeypatch.setattr(PoetryLM, "forward", nan_while_training)
    run = tmp_path / "run"
    argv = [*TINY_ARGS, "--max-bad-steps", "2", "--eval-every", "0", "--run-dir", run]
    out = run_cli("train", *argv, env={"POEMTUI_KEEP_MEMORY": "0"})
    assert out.status == 2, out.err[-2000:]
    lines = out.err.strip().splitlines()
    ending = "2 non-finite steps in a row"
    assert sum(ending in line for line in lines) == 1 and ending in lines[-1], out.err
    assert sum("skipped" in line for line in lines) == 2, out.err  # the warnings, each once
    last = json.loads((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert last["event"] == "error" and last["fatal"] and ending in last["message"]


def test_a_nan_evaluation_through_the_command_is_reported_not_a_crash(tmp_path, monkeypatch):
    """`python -m core.train` (in this process; malloc left alone) with the model's logits made NaN during
    its first evaluation, as a diverging model would show it: a NaN dev loss."""
    from core.model import PoetryLM

    forward = PoetryLM.forward
    seen = {"train": False, "poisoned": False}

    def poisoned_forward(self, inputs, *args, **kwargs):
        logits, state = forward(self, inputs, *args, **kwargs)
        if self.training:
            seen["train"] = True
        elif seen["train"] and not seen["poisoned"]:
            logits, seen["poisoned"] = logits * torch.tensor(float("nan")), True
        return logits, state

    monkeypatch.setattr(PoetryLM, "forward", poisoned_forward)
    run = tmp_path / "run"
    out = run_cli("train", *TINY_ARGS, *NAN_ARGS, "--run-dir", run, env={"POEMTUI_KEEP_MEMORY": "0"})
    assert out.status == 0, out.err[-2000:]
    assert seen["poisoned"]
    events = [json.loads(line) for line in out.out.splitlines()]
    first = next(e for e in events if e["event"] == "eval")
    assert first["dev_ppl"] is None  # JSON has no NaN: the event says null
    assert events[-1]["event"] == "done" and events[-1]["best_dev_ppl"] is not None
    all_checkpoints_load(run)


# --- 8. a corpus that changed between the run and the resume ------------------------------------------------


@pytest.fixture(scope="module")
def user_corpus_trained(tmp_path_factory, tang300):
    """A run on a user corpus file (tang300's poems, one a line), trained once for this module."""
    poems = tang300.splits["train"] + tang300.splits["dev"]
    folder = tmp_path_factory.mktemp("user-corpus")
    corpus = folder / "poems.txt"
    corpus.write_text("\n".join(poems) + "\n", encoding="utf-8")
    run = folder / "run"
    train_tiny(run, corpus=str(corpus), max_steps=2, eval_every=0, sample_on_eval=False)
    return run / f"last{EXT}", corpus, poems


@pytest.fixture
def user_corpus_run(user_corpus_trained):
    """(last checkpoint, the corpus file as it was trained on, its poems): the tests edit or delete the
    file, so it is written again for each."""
    last, corpus, poems = user_corpus_trained
    corpus.write_text("\n".join(poems) + "\n", encoding="utf-8")
    return last, corpus, poems


def test_a_corpus_changed_since_the_checkpoint_is_refused_on_resume(user_corpus_run, tmp_path):
    last, corpus, poems = user_corpus_run
    corpus.write_text("\n".join(poems[:200]) + "\n", encoding="utf-8")  # someone edited the file
    with pytest.raises(CheckpointError) as exc:
        train_tiny(tmp_path / "again", resume=last, max_steps=3)
    assert_one_line(str(exc.value))
    assert "corpus changed" in str(exc.value) and last.name in str(exc.value)
    out = run_cli("train", "--resume", last, "--max-steps", "3")
    assert out.status == 2 and "corpus changed" in out.err, out.err
    assert_one_line(out.err)
    corpus.unlink()  # and a corpus that is gone
    with pytest.raises(PoemError) as gone:
        train_tiny(tmp_path / "again", resume=last, max_steps=3)
    assert_one_line(str(gone.value))
    assert "poems.txt" in str(gone.value)


def test_the_corpus_change_message_names_both_vocabulary_sizes(user_corpus_run, tmp_path):
    from core.corpus import load_corpus

    last, corpus, poems = user_corpus_run
    corpus.write_text("\n".join(poems[:200]) + "\n", encoding="utf-8")
    was, now = len(load_checkpoint(last).vocab), len(load_corpus(str(corpus)).build_vocab())
    assert was != now
    with pytest.raises(CheckpointError) as exc:
        train_tiny(tmp_path / "again", resume=last, max_steps=3)
    assert f"trained with |V|={was}" in str(exc.value) and f"this corpus has {now}" in str(exc.value)


def test_resuming_a_checkpoint_without_training_state_is_one_line(user_corpus_run, tmp_path):
    from safetensors.torch import load, save

    from core.runs.checkpoint import META_KEY

    last, _, _ = user_corpus_run
    data = last.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"][META_KEY])
    del meta["scheduler"]
    bad = tmp_path / "no-scheduler.safetensors"
    bad.write_bytes(save(load(data), metadata={META_KEY: json.dumps(meta)}))
    load_checkpoint(bad)  # a fine checkpoint to generate with
    with pytest.raises(CheckpointError) as exc:
        train_tiny(tmp_path / "again", resume=bad, max_steps=3)
    assert "scheduler" in str(exc.value)
