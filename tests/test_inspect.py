"""core.inspection and `python -m core.inspect`: the step-by-step LSTM equals the fused model, our backward's
‖∂L/∂h_t‖ equals autograd's, the JSON keys, the tracking units (a line-position unit, cached next to the
checkpoint), and the command's refusals in one line."""

from __future__ import annotations

import json
import math

import pytest
from conftest import assert_user_error

from core.inspection import Inspector
from core.inspection.units import cache_path, targets

POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.fixture(scope="module")
def inspector(tiny_checkpoint):
    return Inspector.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def result(inspector):
    return inspector.inspect(POEM, units=inspector.units(limit=40))


def test_keys_and_shapes(result):
    assert set(result) >= {"chars", "surprisal", "top5", "gates", "units", "grad_norms"}
    n = len(POEM)
    assert result["chars"] == list(POEM) and len(result["surprisal"]) == n and len(result["top5"]) == n
    assert all(s >= 0 and math.isfinite(s) for s in result["surprisal"])
    for top in result["top5"]:
        assert len(top) == 5 and sum(p for _, p in top) <= 1 + 1e-9
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    layer = result["gates"][0]
    assert set(layer) >= {"i", "f", "o", "c", "units"} and layer["units"]
    for name in ("i", "f", "o"):
        assert all(len(row) == n + 1 and all(0 <= v <= 1 for v in row) for row in layer[name])
    assert len(result["grad_norms"]) == result["grad_target"]["step"] + 1


def test_the_step_by_step_lstm_is_the_fused_model(result):
    assert result["fused_max_abs_diff"] < 1e-8


def test_our_backward_matches_autograd(result):
    assert result["grad_check_max_rel_error"] < 1e-8
    assert result["grad_norms"][-1] > 0


def test_a_unit_tracks_the_position_in_the_line(result):
    best = {u["label"]: abs(u["correlation"]) for u in reversed(result["units"])}
    assert set(best) == {"line_position", "line_index", "rhyme_next", "poem_position"}
    assert best["line_position"] > 0.3  # 0.43 for this 32-unit model of two tiny epochs; 0.91 for qts-small


def test_targets():
    t = targets("白日，黄河。")
    assert t["line_position"] == [0, 1, 2, 0, 1, 2, 0]
    assert t["line_index"] == [0, 0, 0, 1, 1, 1, 2]
    assert t["rhyme_next"] == [0, 0, 0, 0, 1, 0, 0]  # after 黄 comes 河, which closes line 2


def test_units_are_cached_next_to_the_checkpoint(inspector):
    first = inspector.units(limit=40)
    path = cache_path(inspector.path, inspector.meta)
    assert path is not None and path.is_file()
    again = inspector.units(limit=40)
    assert again["cached"] and again["units"] == first["units"]


def test_chosen_units_and_refusals(inspector):
    from core.errors import PoemError

    out = inspector.inspect(POEM, units={}, select=[(0, 3), (0, 5)])
    assert out["gates"][0]["units"] == [3, 5]
    with pytest.raises(PoemError, match="no unit 0:999"):
        inspector.inspect(POEM, units={}, select=[(0, 999)])
    with pytest.raises(PoemError, match="type or paste"):
        inspector.inspect("   ", units={})


def test_the_command_json(tiny_checkpoint, capsys):
    from core.inspect.__main__ import main

    assert main([str(tiny_checkpoint), POEM, "--poems", "40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chars"] == list(POEM) and out["units"]
    assert main([str(tiny_checkpoint.parent), POEM, "--no-search", "--units", "0:1,0:2"]) == 0
    text = capsys.readouterr().out
    assert "layer 0 unit 1" in text and "‖∂L/∂h_t‖" in text


def test_the_command_refuses_in_one_line(tiny_checkpoint, cli, python_subprocess, tmp_path):
    assert_user_error(cli("inspect", tiny_checkpoint, POEM, "--poems", "0"), "--poems")  # in process
    # the subprocess smoke test of python -m core.inspect: a real start-up, exit status and stderr
    missing = python_subprocess("-m", "core.inspect", str(tmp_path / "none.safetensors"), POEM)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
