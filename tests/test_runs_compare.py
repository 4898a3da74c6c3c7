"""`python -m core.runs compare`: only the settings that differ, numbers and deltas against a baseline, the
JSON keys, curves on three x axes, and folders of runs (an experiment's) expanded."""

from __future__ import annotations

import json
import math

import pytest
from conftest import assert_user_error, run_cli
from run_fixtures import BATCHES, build_run

from core.errors import PoemError
from core.runs.compare import compare, expand_runs, load_run, load_runs, pick


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "checkpoints"
    build_run(root, "adam", [900.0, 650.0, 700.0], speed=1.5, optimizer="adam")
    build_run(root, "sgd", [1400.0, 1200.0, 1100.0], speed=1.0, optimizer="sgd", lr=None)
    exp = root / "experiments" / "optimizers-tang300"
    build_run(exp, "adam", [800.0, 600.0], speed=2.0, optimizer="adam", dropout=0.3)
    build_run(exp, "rmsprop", [850.0, 610.0], speed=2.0, optimizer="rmsprop", dropout=0.3)
    return root


def test_only_differing_settings_with_deltas_against_the_baseline(runs_root):
    runs = load_runs([runs_root / "adam", runs_root / "sgd"])
    result = compare(runs, baseline=0)
    assert set(result) >= {"runs", "baseline", "differing", "same"}
    assert result["differing"] == ["optimizer", "lr"]  # declaration order; sgd's lr resolved to its default
    assert result["same"]["hidden_size"] == 16 and "optimizer" not in result["same"]
    adam, sgd = result["runs"]
    assert set(adam) >= {
        "name",
        "path",
        "settings",
        "best_dev_ppl",
        "elapsed_s",
        "tokens_per_s",
        "delta",
        "status",
    }
    assert adam["settings"] == {"optimizer": "adam", "lr": 0.01} and sgd["settings"] == {
        "optimizer": "sgd",
        "lr": 1.0,
    }
    assert result["baseline"] == "adam"
    assert adam["best_dev_ppl"] == 650.0 and sgd["best_dev_ppl"] == 1100.0
    assert sgd["delta"]["best_dev_ppl"] == pytest.approx(450.0)
    assert sgd["ratio"]["best_dev_ppl"] == pytest.approx(1100 / 650)
    assert adam["delta"]["best_dev_ppl"] == 0
    assert sgd["elapsed_s"] == pytest.approx(3 * BATCHES * 1.0 + 2)
    assert sgd["tokens_per_s"] == pytest.approx(700.0) and adam["tokens_per_s"] == pytest.approx(700 / 1.5)
    assert adam["status"] == "finished" and adam["steps"] == 3 * BATCHES
    pinned = compare(runs, baseline=pick(runs, "sgd"))
    assert pinned["baseline"] == "sgd" and pinned["runs"][0]["delta"]["best_dev_ppl"] == pytest.approx(-450.0)


def test_curves_have_step_tokens_and_minutes(runs_root):
    run = load_run(runs_root / "adam")
    assert len(run.losses) == 3 * BATCHES and len(run.evals) == 3
    step, tokens, minutes, ppl = run.evals[1]
    assert (step, tokens, ppl) == (2 * BATCHES, 2 * BATCHES * 700, 650.0)
    assert minutes == pytest.approx((2 * BATCHES * 1.5 + 1) / 60)
    assert run.curve("dev_ppl", "tokens")[0] == (BATCHES * 700, 900.0)
    assert run.curve("loss", "minutes")[0][0] == pytest.approx(1.5 / 60)


def test_an_experiment_folder_stands_for_its_runs_and_names_stay_distinct(runs_root):
    folders = expand_runs([runs_root / "experiments" / "optimizers-tang300", runs_root / "adam"])
    assert [f.name for f in folders] == ["adam", "rmsprop", "adam"]
    names = [
        r.name for r in load_runs([runs_root / "experiments" / "optimizers-tang300", runs_root / "adam"])
    ]
    assert names == ["optimizers-tang300/adam", "optimizers-tang300/rmsprop", "checkpoints/adam"]
    assert expand_runs([runs_root / "adam" / "best.safetensors"]) == [runs_root / "adam"]
    with pytest.raises(PoemError, match="not a run folder"):
        expand_runs([runs_root / "experiments"])  # a folder of experiments, not of runs
    with pytest.raises(PoemError, match="no such"):
        expand_runs([runs_root / "missing"])


def test_the_command_prints_json_and_a_table(runs_root, python_subprocess):
    out = python_subprocess(
        "-m",
        "core.runs",
        "compare",
        str(runs_root / "adam"),
        str(runs_root / "sgd"),
        "--baseline",
        "sgd",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["baseline"] == "sgd" and result["differing"] == ["optimizer", "lr"]
    assert "curves" not in result["runs"][0]
    # in process, as the command's __main__ runs it: the table, and a mistake
    table = run_cli("runs", "compare", runs_root / "experiments" / "optimizers-tang300")
    assert table.status == 0, table.err
    assert "rmsprop" in table.out and "best dev ppl" in table.out and "★" in table.out
    assert_user_error(run_cli("runs", "compare", runs_root / "nothing"))


def test_json_curves_on_request(runs_root):
    result = compare(load_runs([runs_root / "adam"]), curves=True)
    curves = result["runs"][0]["curves"]
    assert len(curves["dev_ppl"]) == 3 and len(curves["dev_ppl"][0]) == 4
    assert all(math.isfinite(v) for point in curves["loss"] for v in point)
