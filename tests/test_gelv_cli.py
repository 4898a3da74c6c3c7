"""`python -m core.gelv` as a user runs it: one JSON object, exit 2 with one line on bad input."""

from __future__ import annotations

import json

import pytest

from core.gelv.report import tang300_poems


@pytest.fixture(scope="module")
def deng_guan_que_lou():
    return next(p["text"] for p in tang300_poems() if p["title"] == "登鹳雀楼")


def test_check_json(python_subprocess, deng_guan_que_lou):
    proc = python_subprocess("-m", "core.gelv", deng_guan_que_lou, "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    out = json.loads(line)
    assert out["passed"] is True and out["rhyme_ok"] is True and out["faults"] == []
    assert out["pattern"] == "五绝·仄起·首句不入韵" and out["rhyme_group"] == "尤"
    assert [len(t) for t in out["tones"]] == [5, 5, 5, 5]
    assert out["text"].startswith("白日依山尽，")


def test_check_human_output_and_stdin(python_subprocess, deng_guan_que_lou):
    proc = python_subprocess("-c", "import sys, runpy; sys.argv=['core.gelv', '-']; "
                             f"sys.stdin=__import__('io').StringIO({deng_guan_que_lou!r}); "
                             "runpy.run_module('core.gelv', run_name='__main__')")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "五绝·仄起·首句不入韵" in proc.stdout and "passed" in proc.stdout and "◎" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["床前明月光，疑是地上霜。"], "not a regular-form poem: 2 lines of 5, 5 characters"),
        (["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "--pattern", "七律 平起"], "not a 七律"),
        (["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "--pattern", "律诗"], "name a form"),
        (["--json"], "error"),
    ],
)
def test_user_mistakes_exit_2_in_one_line(python_subprocess, args, says):
    proc = python_subprocess("-m", "core.gelv", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr


def test_coverage_json(python_subprocess):
    proc = python_subprocess("-m", "core.gelv", "coverage", "--corpus", "tang300", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["corpora"]["tang300"]["tone_known"]["characters"] > 0.98
    assert out["table"]["strains"]["agreement_per_occurrence"] > 0.99


def test_validate_on_the_test_split(python_subprocess):
    """Real regulated verse mostly passes; the same characters shuffled almost never do."""
    proc = python_subprocess("-m", "core.gelv", "validate", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    summary = out["summary"]
    assert summary["poems"] > 1000 and summary["regular"] == summary["poems"]
    assert summary["passed"] > 0.6 and summary["rhyme_rate"] > 0.8
    assert summary["conformity"]["quantiles"]["p50"] == 1.0
    assert out["shuffled_control"]["passed"] < 0.01
    assert out["tang300_sections"]["七言律诗"]["passed"] > 0.7
    assert all(v and v["passed"] for v in out["famous"].values()), out["famous"]
