"""The report's experiments on the real tang300 corpus: tiny optimizer runs (skip, resume, outputs) and the
numbers that show why zero initialisation fails. The `experiment` fixture is the subprocess smoke test of
`python -m core.experiments`; the other calls run the command in this process (its training runs are
still `python -m core.train` children, as always)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest
import torch
from conftest import assert_user_error, run_cli, run_cli_process

from core.errors import PoemError
from core.experiments import (
    LR_GRID,
    Budget,
    InitSettings,
    Plan,
    optimizer_specs,
    plan_optimizer_runs,
    run_state,
)
from core.experiments.launch import exclusive
from core.experiments.optimizers import next_lr
from core.experiments.runs import parse_extra_flags
from core.experiments.symmetry import record_steps, run_init_experiment, unigram_entropy
from core.runs.metrics import read_events
from core.training.backends import OPTIMIZERS

TINY = ["--hidden-size", "16", "--embed-size", "16", "--batch-size", "16"]  # passed on to core.train
STEPS = 4


def run_optimizers(checkpoints, out, *more, optimizers="adam,sgd", steps=STEPS, runner=run_cli):
    return runner(
        "experiments",
        "optimizers",
        "--corpus",
        "tang300",
        "--optimizers",
        optimizers,
        "--budget-steps",
        str(steps),
        "--threads",
        "1",
        "--eval-every",
        "2",
        "--checkpoints",
        str(checkpoints),
        "--out",
        str(out),
        *TINY,
        *more,
    )


def tiny_plan(checkpoints, steps=STEPS, **fields) -> Plan:
    extra = parse_extra_flags(TINY)
    return Plan(
        corpus="tang300",
        budget=Budget(steps=steps),
        checkpoints=checkpoints,
        extra=extra,
        eval_every=2,
        **fields,
    )


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two optimizers trained for a few steps by the real command; its JSON answer and folders."""
    root = tmp_path_factory.mktemp("experiment")
    proc = run_optimizers(root / "checkpoints", root / "out", "--json", "--jobs", "2", runner=run_cli_process)
    return root, proc.json()


def test_each_optimizer_is_an_ordinary_run_with_the_same_start(experiment):
    root, result = experiment
    runs = {r["optimizer"]: r for r in result["runs"]}
    assert set(runs) == {"adam", "sgd"}
    firsts = []
    for opt, r in runs.items():
        folder = root / "checkpoints" / "experiments" / "optimizers-tang300" / opt
        assert r["run_dir"] == str(folder)
        assert (folder / "best.safetensors").exists() and (folder / "last.safetensors").exists()
        events = read_events(folder)
        assert events[-1]["event"] == "done" and events[-1]["status"] == "max_steps"
        assert r["status"] == "max_steps" and r["steps"] == STEPS
        assert len(r["curve"]) >= 2 and r["best_dev_ppl"] == min(p["dev_ppl"] for p in r["curve"])
        assert math.isfinite(r["best_dev_ppl"]) and r["tokens_per_s"] > 0
        firsts.append(next(e["loss"] for e in events if e["event"] == "batch"))
    # the same seed, model and first batch: the loss before any update is the same for every optimizer
    assert firsts[0] == pytest.approx(firsts[1], abs=1e-6)
    assert runs["adam"]["lr"] != runs["sgd"]["lr"]


def test_outputs_json_markdown_and_plot(experiment):
    root, result = experiment
    out = root / "out"
    stored = json.loads((out / "optimizers-tang300.json").read_text(encoding="utf-8"))
    assert [r["best_dev_ppl"] for r in stored["runs"]] == [r["best_dev_ppl"] for r in result["runs"]]
    assert stored["budget"] == {"steps": STEPS, "minutes": None}
    assert stored["settings"]["hidden_size"] == 16
    table = (out / "optimizers-tang300.md").read_text(encoding="utf-8")
    for r in result["runs"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| {r['optimizer']} |"))
        assert f"{r['best_dev_ppl']:,.2f}" in row and f"| {STEPS} |" in row
    if importlib.util.find_spec("matplotlib"):
        assert (out / "optimizers-tang300.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert "matplotlib" in stored["plot_note"]


def test_a_second_call_skips_finished_runs(experiment, tmp_path):
    root, _ = experiment
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    metrics = sorted((tmp_path / "checkpoints").rglob("metrics.jsonl"))
    before = [m.read_bytes() for m in metrics]
    plan = tiny_plan(tmp_path / "checkpoints")
    assert [run_state(s) for s in optimizer_specs(plan, ["adam", "sgd"])] == ["done", "done"]
    assert (
        plan_optimizer_runs(
            "tang300",
            budget_steps=STEPS,
            checkpoints=tmp_path / "checkpoints",
            optimizers=["adam", "sgd"],
            extra=plan.extra,
        )
        == []
    )
    proc = run_optimizers(tmp_path / "checkpoints", tmp_path / "out")
    assert proc.status == 0, proc.err
    assert proc.err.count("done, skipped") == 2
    assert [m.read_bytes() for m in metrics] == before


def test_a_run_without_done_is_resumed_and_a_larger_budget_continues(experiment, tmp_path):
    root, _ = experiment
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    runs = tmp_path / "checkpoints" / "experiments" / "optimizers-tang300"
    metrics = runs / "adam" / "metrics.jsonl"
    lines = metrics.read_text(encoding="utf-8").splitlines(keepends=True)
    metrics.write_text("".join(lines[:-1]), encoding="utf-8")  # as if killed before `done`
    plan = tiny_plan(tmp_path / "checkpoints")
    assert [run_state(s) for s in optimizer_specs(plan, ["adam", "sgd"])] == ["resume", "done"]
    commands = plan_optimizer_runs(
        "tang300",
        budget_steps=STEPS,
        checkpoints=tmp_path / "checkpoints",
        optimizers=["adam", "sgd"],
        extra=plan.extra,
        eval_every=2,
    )
    assert len(commands) == 1 and commands[0].state == "resume"
    argv = commands[0].argv
    assert argv[1:3] == ["-m", "core.train"]
    assert argv[argv.index("--resume") + 1] == str(runs / "adam" / "last.safetensors")
    # a larger budget: a finished run continues too
    bigger = tiny_plan(tmp_path / "checkpoints", steps=STEPS + 2)
    assert [run_state(s) for s in optimizer_specs(bigger, ["adam", "sgd"])] == ["resume", "resume"]
    proc = run_optimizers(tmp_path / "checkpoints", tmp_path / "out", optimizers="adam", steps=STEPS + 2)
    assert proc.status == 0, proc.err
    events = read_events(runs / "adam")
    assert events[-1]["event"] == "done" and events[-1]["step"] == STEPS + 2
    steps = [e["step"] for e in events if e["event"] == "batch"]
    assert steps == [*range(1, STEPS + 1), STEPS + 1, STEPS + 2]  # no step trained twice


def test_other_settings_in_the_same_folder_are_refused(experiment):
    root, _ = experiment
    plan = tiny_plan(root / "checkpoints")
    spec = optimizer_specs(plan, ["adam"], {"adam": 0.5})[0]
    with pytest.raises(PoemError, match="--fresh"):
        run_state(spec)


def test_a_time_budget_resumes_with_the_time_left(experiment):
    root, _ = experiment
    plan = tiny_plan(root / "checkpoints")
    plan.budget = Budget(minutes=10)
    spec = optimizer_specs(plan, ["sgd"])[0]
    assert run_state(spec) == "resume"  # it stopped at its step budget, well within 10 minutes
    argv = spec.resume_argv()
    left = float(argv[argv.index("--max-minutes") + 1])
    used = read_events(spec.run_dir)[-1]["elapsed_s"] / 60
    assert left == pytest.approx(10 - used, abs=0.01)


@pytest.mark.slow  # three child trainings, ~15 s on a busy machine
def test_lr_sweep_picks_the_best_and_writes_its_table(tmp_path, cli):
    sweep = cli(
        "experiments", "lr-sweep", "--corpus", "tang300", "--optimizer", "sgd", "--lrs", "0.3,1",
        "--budget-steps", "2", "--extend", "0", "--threads", "1", "--jobs", "2",
        "--checkpoints", tmp_path / "ck", "--out", tmp_path / "out", "--json", *TINY,
    ).json()  # fmt: skip
    runs = sweep["optimizers"]["sgd"]["runs"]
    assert [r["lr"] for r in runs] == [0.3, 1.0] and all(r["status"] == "max_steps" for r in runs)
    best = min(runs, key=lambda r: r["best_dev_ppl"])
    assert sweep["chosen"] == {"sgd": best["lr"]} and sweep["optimizers"]["sgd"]["at_edge"]
    assert json.loads((tmp_path / "out" / "lr-sweep-tang300.json").read_text(encoding="utf-8"))["chosen"] == {
        "sgd": best["lr"]
    }
    table = (tmp_path / "out" / "lr-sweep-tang300.md").read_text(encoding="utf-8")
    assert f"**{best['lr']:g}: {best['best_dev_ppl']:,.2f}**" in table
    assert (tmp_path / "ck" / "experiments" / "lr-sweep-tang300" / "sgd-lr0.3" / "metrics.jsonl").exists()


def test_the_grid_grows_past_an_end_that_wins():
    assert next_lr([0.03, 0.1, 0.3], 0.3) == 1.0
    assert next_lr([1e-3, 3e-3, 1e-2], 1e-3) == 3e-4
    assert next_lr([0.01, 0.03, 0.1], 0.03) is None
    assert set(LR_GRID) == set(OPTIMIZERS) and all(len(v) == 3 for v in LR_GRID.values())


@pytest.mark.parametrize(
    "args, needle",
    [([], "budget"), (["--budget-steps", "2", "--run-dir", "x"], "--run-dir")],
)
def test_user_mistakes_exit_2_in_one_line(args, needle, tmp_path, cli):
    assert_user_error(cli("experiments", "optimizers", "--checkpoints", tmp_path, *args), needle)
    assert not (tmp_path / "experiments").exists()


def test_unknown_training_flags_and_optimizers_are_refused(tmp_path, cli):
    with pytest.raises(SystemExit) as exc:
        parse_extra_flags(["--hidden-sise", "8"])
    assert exc.value.code == 2
    argv = ["optimizers", "--budget-steps", "2", "--checkpoints", tmp_path]
    assert_user_error(cli("experiments", *argv, "--optimizers", "adam,lion"), "lion")
    assert_user_error(cli("experiments", *argv, "--hidden-sise", "8"), "--hidden-sise")
    assert not (tmp_path / "experiments").exists()


def test_two_processes_never_train_the_same_runs(tmp_path, cli):
    folder = tmp_path / "experiments" / "optimizers-tang300"
    with exclusive({folder}):  # as another experiment process would hold it
        out = cli(
            "experiments",
            "optimizers",
            "--budget-steps",
            "2",
            "--optimizers",
            "adam",
            "--checkpoints",
            tmp_path,
        )
    assert_user_error(out, "in use")
    assert not (folder / "adam").exists()


# --- initialisation ----------------------------------------------------------------------------------------


def test_unigram_entropy():
    # targets 5 5 eos | 6 eos: p = 2/5, 2/5, 1/5
    expected = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    assert unigram_entropy([[5, 5], [6]], eos=2) == pytest.approx(expected)


def test_record_steps_span_the_run():
    steps = record_steps(300)
    assert steps[0] == 0 and steps[-1] == 300 and {1, 10, 100, 150} <= set(steps)


@pytest.fixture(scope="module")
def init_result(tmp_path_factory):
    torch.set_num_threads(1)
    settings = InitSettings(schemes=("zeros", "default"), steps=3, embed_size=8, hidden_size=8)
    cache = tmp_path_factory.mktemp("init")
    return settings, cache, run_init_experiment(settings, cache)


def test_zero_init_keeps_every_hidden_unit_identical(init_result):
    settings, _, result = init_result
    zeros, default = result["schemes"]
    assert zeros["scheme"] == "zeros" and default["scheme"] == "default"
    for r in zeros["records"]:
        for layer in r["layers"]:
            assert layer["activation_spread"] == 0.0 and layer["grad_row_spread"] == 0.0
            assert layer["distinct_units"] == 1 and layer["grad_distinct_rows"] == 1
        assert r["grad_norm_all_but_head_bias"] == 0.0 and r["grad_norm_head_bias"] > 0
    # only head.bias learns, but it does learn: the loss falls (towards the unigram entropy)
    assert zeros["records"][-1]["dev_loss"] < zeros["records"][0]["dev_loss"]
    for r in default["records"]:
        for layer in r["layers"]:
            assert layer["activation_spread"] > 0 and layer["grad_row_spread"] > 0
            assert layer["distinct_units"] == settings.hidden_size
    summary = {s["scheme"]: s for s in result["summary"]}
    assert summary["zeros"]["max_activation_spread"] == 0.0 and summary["zeros"]["min_distinct_units"] == 1
    # a model without context: never below the entropy of the train characters
    assert summary["zeros"]["train_split_loss_end"] >= result["unigram_entropy"] - 1e-9
    assert summary["default"]["max_grad_norm_but_head_bias"] > 0


def test_init_results_are_reused_and_written(init_result, tmp_path, cli):
    _, cache, result = init_result
    checkpoints = tmp_path / "checkpoints"
    copy = checkpoints / "experiments" / "init-tang300"  # where the command keeps its per-scheme results
    shutil.copytree(cache, copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.glob("*.json")}
    argv = ["init", "--schemes", "zeros,default", "--steps", "3", "--embed-size", "8", "--hidden-size", "8"]
    argv += ["--checkpoints", str(checkpoints), "--out", str(tmp_path / "out"), "--json", "--quiet"]
    printed = cli("experiments", *argv).json()
    assert printed["schemes"] == result["schemes"]  # read back, not trained again
    assert {p.name: p.stat().st_mtime_ns for p in copy.glob("*.json")} == before
    table = (tmp_path / "out" / "init-tang300.md").read_text(encoding="utf-8")
    assert "| zeros |" in table and "§10" in table and "1 of 8" in table
    stored = json.loads((tmp_path / "out" / "init-tang300.json").read_text(encoding="utf-8"))
    assert stored["unigram_entropy"] == pytest.approx(result["unigram_entropy"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_reference_transformer_trains_for_its_budget_and_logs_like_a_run(precision, tmp_path):
    """architectures' Transformer: its own loop for a time budget, in the LSTM runs' precision (bf16 only
    where the CPU computes it natively), events a run's metrics.jsonl would hold, dev perplexity falling."""
    from core.corpus import batches_for_mode
    from core.experiments.transformer import TransformerConfig, TransformerLM, train_for
    from core.model import resolve_precision
    from core.runs.metrics import read_events
    from core.training.perplexity import result_from_sums, score_poems
    from core.training.settings import TrainConfig
    from core.training.state import RunData

    if precision == "bf16" and resolve_precision("auto", torch.device("cpu")) != "bf16":
        pytest.skip("this CPU computes no bfloat16 natively")
    data = RunData.load(TrainConfig.from_dict({"corpus": "tang300"}))
    torch.manual_seed(0)
    model = TransformerLM(
        TransformerConfig(vocab_size=len(data.vocab), d_model=32, heads=2, layers=1, feedforward=64)
    )

    def batches_for(epoch):
        return batches_for_mode(data.train_ids, "poem", 16, 64, seed=0, epoch=epoch)

    dev = data.dev_ids[:16]
    untrained = result_from_sums(*score_poems(model, dev, batch_size=16), len(dev)).perplexity
    done = train_for(
        model, batches_for, dev, tmp_path, minutes=0.02, lr=3e-3, warmup=5, eval_every=10,
        precision=precision,
    )  # fmt: skip
    events = read_events(tmp_path)
    assert events[0]["event"] == "config" and events[0]["precision"] == precision
    evals = [e for e in events if e["event"] == "eval"]
    assert done["event"] == "done" and done["status"] == "time_limit" and done["precision"] == precision
    assert done["step"] >= 10 and done["elapsed_s"] >= 1.2 and done["tokens_per_s"] > 0  # 0.02 minutes
    assert evals and evals[-1]["dev_ppl"] < untrained
    assert done["best_dev_ppl"] == min(e["dev_ppl"] for e in evals)
