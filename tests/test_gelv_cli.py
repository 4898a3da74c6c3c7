"""`python -m core.gelv` as a user runs it: one JSON object, exit 2 with one line on bad input. The first
test is the command's subprocess smoke test; the others run it in this process (tests/conftest.py)."""

from __future__ import annotations

import pytest
from conftest import assert_user_error

from core.gelv.report import tang300_poems


@pytest.fixture(scope="module")
def deng_guan_que_lou():
    return next(p["text"] for p in tang300_poems() if p["title"] == "登鹳雀楼")


def test_check_json(cli_process, deng_guan_que_lou):
    out = cli_process("gelv", deng_guan_que_lou, "--json").json()
    assert out["passed"] is True and out["rhyme_ok"] is True and out["faults"] == []
    assert out["pattern"] == "五绝·仄起·首句不入韵" and out["rhyme_group"] == "尤"
    assert [len(t) for t in out["tones"]] == [5, 5, 5, 5]
    assert out["text"].startswith("白日依山尽，")


def test_check_human_output_and_stdin(cli, deng_guan_que_lou):
    proc = cli("gelv", "-", stdin=deng_guan_que_lou)
    assert proc.status == 0, proc.err
    assert "五绝·仄起·首句不入韵" in proc.out and "passed" in proc.out and "◎" in proc.out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["床前明月光，疑是地上霜。"], "not a regular-form poem: 2 lines of 5, 5 characters"),
        (["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "--pattern", "七律 平起"], "not a 七律"),
        (["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "--pattern", "律诗"], "name a form"),
        (["--json"], "error"),
    ],
)
def test_user_mistakes_exit_2_in_one_line(cli, args, says):
    assert_user_error(cli("gelv", *args), says)


def test_coverage_json(cli):
    out = cli("gelv", "coverage", "--corpus", "tang300", "--json").json()
    assert out["corpora"]["tang300"]["tone_known"]["characters"] > 0.98
    assert out["table"]["strains"]["agreement_per_occurrence"] > 0.99


def test_validate_on_the_test_split(cli):
    """Real regulated verse mostly passes; the same characters shuffled almost never do."""
    out = cli("gelv", "validate", "--json").json()
    summary = out["summary"]
    assert summary["poems"] > 1000 and summary["regular"] == summary["poems"]
    assert summary["passed"] > 0.6 and summary["rhyme_rate"] > 0.8
    assert summary["conformity"]["quantiles"]["p50"] == 1.0
    assert out["shuffled_control"]["passed"] < 0.01
    assert out["tang300_sections"]["七言律诗"]["passed"] > 0.7
    assert all(v and v["passed"] for v in out["famous"].values()), out["famous"]
