"""Inputs that hang, exhaust memory, crash or mislead (reliability, second round, classes 3-6).

Every command runs in this process (tests/conftest.py: run_cli, through core.cli.run as `python -m` does);
its timeout (SIGALRM) turns a hang into a failure instead of a blocked suite.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli

from core.cli import print_json
from core.errors import CheckpointError, PoemError
from core.generation.settings import SampleSettings
from core.options import OptionError
from core.runs import atomic
from core.runs import checkpoint as ck
from core.runs.checkpoint import EXT
from core.runs.folder import checkpoint_name
from core.training.settings import TrainConfig

TINY = ["--corpus", "tang300", "--embed-size", "16", "--hidden-size", "16", "--num-layers", "1"]
TINY += ["--batch-size", "16", "--eval-every", "0", "--sample-on-eval", "false", "--seed", "7", "--quiet"]
POEMS = [
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
]


NO_MALLOC = {"POEMTUI_KEEP_MEMORY": "0"}  # in process: malloc left alone (conftest.run_cli)


def refused(command: str, argv: list[str], *needles: str) -> str:
    """`python -m core.<command> argv`, in this process (conftest.run_cli; 60 s before it counts as a
    hang): exit 2, nothing on stdout, one line on stderr naming every needle."""
    return assert_user_error(run_cli(command, *argv, env=NO_MALLOC, timeout=60), *needles)


def trains(argv: list[str]) -> None:
    result = run_cli("train", *argv, env=NO_MALLOC, timeout=120)
    assert result.status == 0, result.err


@pytest.fixture
def special(tmp_path):
    """Paths that are not regular files: a FIFO (reading it blocks until a writer comes), a device that
    never ends, a symlink loop, a folder, a missing file."""
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    return {
        "FIFO": (fifo, "FIFO"),
        "device": (Path("/dev/zero"), "character device"),
        "loop": (loop, "symlink loop"),
        "folder": (folder, "folder"),
        "missing": (tmp_path / "missing.txt", "missing"),
    }


# --- class 3: inputs that hang or exhaust memory -----------------------------------------------------------


def test_special_files_as_a_corpus_are_refused_by_every_reader(tmp_path, special, tiny_checkpoint):
    for path, what in special.values():
        refused("corpus", ["stats", "--corpus", str(path)], str(path), what)
        refused("train", [*TINY, "--corpus", str(path), "--run-dir", str(tmp_path / "r")], what)
        refused("evaluate", [str(tiny_checkpoint), "--corpus", str(path)], what)
        refused("corpus", ["fetch", "--source", str(path), "--force"], "--source", what)
    assert not (tmp_path / "r").exists()


def test_special_files_as_a_checkpoint_are_refused_by_every_reader(tmp_path, special):
    for path, what in special.values():
        what = "no such checkpoint" if what == "missing" else what
        refused("evaluate", [str(path)], what)
        refused("generate", [str(path), "--start", "山"], what)
        refused("train", ["--resume", str(path), "--run-dir", str(tmp_path / "r")], what)


def test_a_checkpoint_whose_corpus_became_a_fifo_is_refused_on_resume(tmp_path):
    corpus = tmp_path / "poems.txt"
    corpus.write_text("\n".join(POEMS * 3) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    args = [*TINY, "--corpus", str(corpus), "--max-steps", "1", "--run-dir", str(run)]
    trains(args)
    corpus.unlink()
    os.mkfifo(corpus)
    refused("train", ["--resume", str(run / f"last{EXT}"), "--max-steps", "2"], "FIFO")
    refused("evaluate", [str(run)], "FIFO")


def test_user_poems_longer_than_the_limit_are_split_and_reported(tmp_path):
    from core.corpus.load import MAX_USER_POEM_CHARS

    line = "".join(f"{'山水花月风云日'[i % 7]}{'江河湖海天'[i % 5]}春秋冬夏，" for i in range(5000)) + "。"
    path = tmp_path / "long.txt"
    path.write_text((line + "\n") * 1 + "\n".join(POEMS) + "\n", encoding="utf-8")
    stats = run_cli("corpus", "stats", "--corpus", path, "--json").json()
    pieces = stats["split_long"]["pieces"]
    assert stats["split_long"] == {"poems": 1, "pieces": pieces, "limit": MAX_USER_POEM_CHARS}
    assert pieces >= len(line) // MAX_USER_POEM_CHARS and stats["max_length"] <= MAX_USER_POEM_CHARS
    assert stats["poems"]["total"] == pieces + 2  # the short poems are kept whole


def test_a_batch_that_cannot_fit_is_refused_before_allocating(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("POEMTUI_MEMORY_AVAILABLE", "64M")
    refused("train", [*TINY, "--batch-size", "256", "--run-dir", str(run)],
        "needs about", "more than the 64 MiB available", "--batch-size",
    )  # fmt: skip
    refused("train", [*TINY, "--seq-mode", "stream", "--seq-len", "4096", "--run-dir", str(run)],
        "--batch-size or --seq-len",
    )  # fmt: skip
    monkeypatch.delenv("POEMTUI_MEMORY_AVAILABLE")
    err = refused("train", [*TINY, "--hidden-size", "100000", "--run-dir", str(run)], "--hidden-size")
    assert "GiB" in err and "weights" in err
    assert not run.exists()  # refused before the folder, the model or the optimizer


def test_evaluate_refuses_a_batch_that_cannot_fit(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("POEMTUI_MEMORY_AVAILABLE", "1M")
    refused("evaluate", [str(tiny_checkpoint), "--json"], "scoring", "--batch-size")


# --- class 4: unchecked values and paths -------------------------------------------------------------------


def test_output_folders_that_cannot_be_created(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    for flag, path, needle in (
        ("--run-dir", a_file, "exists and is not a folder"),
        ("--run-dir", a_file / "run", "cannot create it"),
        ("--run-dir", Path("/proc/poemtui/run"), "cannot create it"),
        ("--checkpoints", a_file, "exists and is not a folder"),
    ):
        refused("train", [*TINY, "--max-steps", "1", flag, str(path)], flag, str(path), needle)


def test_every_numeric_setting_refuses_nan_inf_and_out_of_range_text():
    """TrainConfig, SampleSettings: the flags and the workbench's form fields parse with these specs."""
    for settings in (TrainConfig, SampleSettings):
        for name, spec in settings.specs().items():
            if spec.kind not in (int, float):
                continue
            for text in (
                "nan",
                "inf",
                "-inf",
                "1e308",
                "-1e308",
                "1e999",
                "9" * 400,
                "-" + "9" * 400,
                "0x10",
                "一",
            ):
                try:
                    value = spec.parse(text)
                except OptionError:
                    continue
                finite = not isinstance(value, float) or math.isfinite(value)
                assert value is None or (finite and spec.problem(value) is None), (name, text)


def test_evaluate_and_generate_numbers_are_checked_where_parsed(tiny_checkpoint):
    refused("evaluate", [str(tiny_checkpoint), "--batch-size", "0"], "--batch-size")
    err = refused("evaluate", [str(tiny_checkpoint), "--quality", "--samples", "0"], "--samples")
    assert "num" not in err
    for flag, value in (("-t", "nan"), ("-t", "inf"), ("--repetition-penalty", "nan"), ("--top-p", "0")):
        refused("generate", [str(tiny_checkpoint), flag, value], flag)
    refused("generate", [str(tiny_checkpoint), "--benchmark", "0"], "--benchmark")


def test_invalid_utf8_is_named_as_such(tiny_checkpoint):
    bad = os.fsdecode(b"\xff\xfe\xe5\xb1")  # as Python hands over argv bytes that are not UTF-8
    refused("generate", [str(tiny_checkpoint), "--start", bad], "--start", "not valid UTF-8")
    refused("generate", [str(tiny_checkpoint), "--acrostic", bad], "not valid UTF-8")
    err = refused("gelv", [bad], "not valid UTF-8 (byte 0xff")
    assert "no Chinese characters" not in err
    refused("train", [*TINY, "--corpus", "x" + bad], "--corpus", "not valid UTF-8")


def test_json_never_holds_nan_or_infinity(capsys):
    print_json({"ppl": math.nan, "runs": [{"best": math.inf, "curve": [1.0, -math.inf]}], "text": "山\udcff"})
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "ppl": None,
        "runs": [{"best": None, "curve": [1.0, None]}],
        "text": "山\udcff",
    }


def test_checkpoint_names_stay_short_whatever_the_perplexity():
    for ppl in (1e304, math.inf, math.nan, 1e6, 123456.789):
        assert len(checkpoint_name(12, 3456, ppl, "adam")) < 40


def test_a_failed_save_says_the_previous_checkpoints_are_intact_only_when_there_are_some(
    tmp_path, tiny_checkpoint, monkeypatch
):
    real = ck.load_checkpoint(tiny_checkpoint)

    def full(_fd, _data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError) as exc:
        ck.save_checkpoint(empty / f"a{EXT}", real.tensors, real.meta)
    assert "No space left" in str(exc.value) and "intact" not in str(exc.value)
    assert "no checkpoint was saved before" in str(exc.value)
    monkeypatch.undo()
    ck.save_checkpoint(empty / f"a{EXT}", real.tensors, real.meta)
    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(CheckpointError, match="the previous checkpoints are intact"):
        ck.save_checkpoint(empty / f"b{EXT}", real.tensors, real.meta)


def test_nonfinite_steps_before_any_save_do_not_claim_a_kept_checkpoint(tmp_path):
    from engine_fixtures import tiny_config

    from core.training.trainer import Trainer

    trainer = Trainer.new(tiny_config(max_bad_steps=2, sample_on_eval=False), tmp_path / "run")
    trainer.backend.train_step = lambda batch: None  # every step diverges
    with pytest.raises(PoemError) as exc:
        trainer.run()
    assert "2 non-finite steps in a row" in str(exc.value)
    assert "no checkpoint of this run had been saved yet" in str(exc.value) and "kept" not in str(exc.value)


# --- class 5: data overwritten without asking --------------------------------------------------------------


def test_gelv_build_data_never_rewrites_the_shipped_table(tmp_path):
    from core.gelv.data import TABLE_PATH

    before = TABLE_PATH.read_bytes()
    assert_user_error(run_cli("gelv", "build-data"), "--out")  # no default: it used to write into the package
    mine = tmp_path / "tones.json"
    mine.write_text("mine", encoding="utf-8")
    refused("gelv", ["build-data", "--out", str(mine)], "exists", "--force")
    refused("gelv", ["build-data", "--out", str(TABLE_PATH)], "--force")
    assert mine.read_text(encoding="utf-8") == "mine" and TABLE_PATH.read_bytes() == before


# --- class 6: messages that name the real cause ------------------------------------------------------------


@pytest.fixture
def user_run(tmp_path_factory):
    """A checkpoint trained on a user's corpus of under 100 poems (split train/dev only)."""
    from engine_fixtures import train_tiny

    root = tmp_path_factory.mktemp("user")
    corpus = root / "poems.txt"
    texts = [p[:-1] + "山水花月风云日"[i % 7] + "。" for i, p in enumerate(POEMS * 10)]
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    train_tiny(root / "run", corpus=str(corpus), max_steps=1, eval_every=0, sample_on_eval=False)
    return root / "run"


def test_a_missing_split_is_explained_for_a_user_corpus(user_run):
    err = refused("evaluate", [str(user_run), "--split", "test"], "has no test split")
    assert "tang300" not in err and "fewer than 100 poems" in err and "--split train or dev" in err


def test_a_bad_setting_in_a_checkpoint_names_the_checkpoint(tmp_path, tiny_checkpoint):
    real = ck.load_checkpoint(tiny_checkpoint)
    meta = json.loads(json.dumps(real.meta))
    meta["train"]["epochs"] = 0
    bad = tmp_path / f"bad{EXT}"
    ck.save_checkpoint(bad, real.tensors, meta)
    err = refused("train", ["--resume", str(bad), "--run-dir", str(tmp_path / "r")], bad.name)
    assert "epochs" in err and not err.startswith("error: --epochs")


def test_a_vocabulary_without_commas_is_refused_before_training(tmp_path):
    corpus = tmp_path / "plain.txt"
    corpus.write_text("\n".join(p.replace("，", "") for p in POEMS * 10) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    args = [*TINY, "--corpus", str(corpus), "--max-steps", "1", "--run-dir", str(run)]
    args[args.index("--sample-on-eval") + 1] = "true"
    refused("train", args, "「，」", "--sample-on-eval false")
    assert not run.exists()  # before training, not at the first evaluation
    args[args.index("--sample-on-eval") + 1] = "false"
    trains(args)
    tang = [*TINY, "--max-steps", "1", "--run-dir", str(tmp_path / "tang")]
    refused("train", [*tang, "--min-freq", "10000"], "--min-freq 10000", "no character")
