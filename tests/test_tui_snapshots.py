"""Snapshot tests (pytest-textual-snapshot) of every screen at 100×30, on fixed content.

The checkpoints are real files written by the engine's Trainer.save, with fixed progress numbers, a fixed
clock and fixed file times, so that nothing on screen depends on the machine or the day. The live screen
shows a finished run replayed from fixed events (the real child process is exercised in test_tui.py).
Update after a deliberate change of the UI with `pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest
from pilot_helpers import wait_for
from run_fixtures import BATCHES, T0, TINY
from textual.widgets import Input

from core.generation.settings import SampleSettings
from core.training.settings import TrainConfig
from core.training.trainer import Trainer
from poemtui.app import PoemApp
from poemtui.screens.generate import GenerateScreen
from poemtui.state.tones import tone_view
from poemtui.state.training import RunState
from poemtui.widgets.poem_block import PoemBlock

SIZE = (100, 30)
SAMPLE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
CONFIG = TINY  # the same tiny runs as tests/run_fixtures.py
RUNS = {  # name -> (optimizer, dev perplexity at each epoch)
    "20240301-100000-tang300-adam": ("adam", [912.35, 655.02, 701.48]),
    "20240302-090000-tang300-sgd": ("sgd", [1450.8, 1201.66, 1099.13]),
}


def fixed_events(ppls: list[float], run_dir: Path) -> list[dict]:
    """The events a run of len(ppls) epochs of BATCHES batches would log, with made-up but fixed numbers."""
    events: list[dict] = []
    epochs = len(ppls)
    for epoch, ppl in enumerate(ppls, start=1):
        for batch in range(1, BATCHES + 1):
            step = (epoch - 1) * BATCHES + batch
            loss = 5.9 + 1.8 * math.exp(-step / 12) + 0.08 * math.sin(step * 1.7)
            events.append(
                dict(
                    event="batch",
                    epoch=epoch,
                    batch=batch,
                    batches=BATCHES,
                    epochs=epochs,
                    step=step,
                    loss=loss,
                    grad_norm=0.9,
                    lr=0.01,
                    tokens_per_s=5210.0,
                    elapsed_s=step * 1.5,
                )
            )
        step = epoch * BATCHES
        best = min(ppls[:epoch])
        events.append(
            dict(
                event="eval",
                epoch=epoch,
                batch=BATCHES,
                step=step,
                loss=6.2,
                dev_loss=math.log(ppl),
                dev_ppl=ppl,
                best_dev_ppl=best,
                lr=0.01,
                elapsed_s=step * 1.5 + 2,
                sample=SAMPLE,
                scheduled=True,
            )
        )
        events.append(
            dict(
                event="checkpoint",
                epoch=epoch,
                batch=BATCHES,
                step=step,
                dev_ppl=ppl,
                best=ppl == best,
                bytes=300_000,
                path=str(run_dir / f"rnn_{epoch}_{BATCHES}_{ppl:.2f}_adam.safetensors"),
            )
        )
    best = min(ppls)
    events.append(
        dict(
            event="done",
            status="finished",
            epoch=epochs,
            step=epochs * BATCHES,
            best_dev_ppl=best,
            dev_ppl=ppls[-1],
            elapsed_s=epochs * BATCHES * 1.5 + 6,
            best_path=str(run_dir / f"rnn_{ppls.index(best) + 1}_{BATCHES}_{best:.2f}_adam.safetensors"),
            last_path=str(run_dir / "last.safetensors"),
            tokens_seen=42_000,
            skipped_steps=0,
        )
    )
    return events


def build_run(root: Path, name: str, optimizer: str, ppls: list[float], t0: float) -> None:
    """Real checkpoints through Trainer.save, with the progress and the clock fixed."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    trainer = Trainer.new(TrainConfig.from_dict({**CONFIG, "optimizer": optimizer}), run_dir)
    trainer._elapsed = lambda: 95.0  # a fixed clock: the files must not depend on how fast the fixture ran
    p = trainer.progress
    for i, ppl in enumerate(ppls):
        p.epoch, p.batch, p.step, p.tokens_seen = i, BATCHES, (i + 1) * BATCHES, (i + 1) * 14_000
        best = ppl < p.best_dev_ppl
        p.best_dev_ppl = min(p.best_dev_ppl, ppl)
        path = trainer.save({"dev_ppl": ppl, "dev_loss": math.log(ppl), "dev_tokens": 4915}, best=best)
        os.utime(path, (t0 + 600 * i, t0 + 600 * i))
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for event in fixed_events(ppls, run_dir):
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def fixed_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("snapshots") / "checkpoints"
    for i, (name, (optimizer, ppls)) in enumerate(RUNS.items()):
        build_run(root, name, optimizer, ppls, T0 + 86_400 * i)
    broken = root / "imported" / "model.safetensors"
    broken.parent.mkdir()
    broken.write_bytes(b"\x80\x04\x95 a pickle, not a checkpoint")
    os.utime(broken, (T0 + 3 * 86_400, T0 + 3 * 86_400))
    return root


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def app_for(root: Path, monkeypatch, **kwargs) -> PoemApp:
    """The app on `root`, named relative to the working folder (the screens show it; tmp paths vary)."""
    monkeypatch.chdir(root.parent)
    return PoemApp(checkpoints_dir=Path(root.name), python=sys.executable, **kwargs)


async def settle(pilot) -> None:
    """Let workers (listing, loading) finish and the messages they post be handled, and stop the cursor
    blinking: the same picture every time. (Waits for work, not for a fixed time: what a timer defers, such
    as the Generate screen's check, is waited for by the test with wait_for.)"""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def test_welcome(snap_compare, monkeypatch, tmp_path):
    assert snap_compare(app_for(tmp_path / "checkpoints", monkeypatch), terminal_size=SIZE, run_before=settle)


def test_train_form(snap_compare, monkeypatch, tmp_path):
    assert snap_compare(
        app_for(tmp_path / "checkpoints", monkeypatch, welcome=False), terminal_size=SIZE, run_before=settle
    )


def test_train_form_with_bad_values(snap_compare, monkeypatch, tmp_path):
    async def run_before(pilot):
        screen = pilot.app.screen
        for name, text in (("batch_size", "3O"), ("dropout", "1.5"), ("hidden_size", "-8"), ("lr", "fast")):
            field = screen.query_one(f"#field-{name}", Input)
            field.value = text
        await pilot.pause()
        await pilot.press("ctrl+s")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(
        app_for(tmp_path / "checkpoints", monkeypatch, welcome=False),
        terminal_size=SIZE,
        run_before=run_before,
    )


def test_train_live_finished_run(snap_compare, monkeypatch, fixed_root, tmp_path):
    name = "20240301-100000-tang300-adam"
    state = RunState(run_dir=fixed_root / name)
    for event in fixed_events(RUNS[name][1], state.run_dir):
        state.apply(event)
    state.process_exited(0, [])
    app = app_for(tmp_path / "checkpoints", monkeypatch, welcome=False)

    async def run_before(pilot):
        pilot.app.run_state = state
        await pilot.press("ctrl+l")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_train_live_failed_run(snap_compare, monkeypatch, tmp_path):
    state = RunState(run_dir=tmp_path / "20240301-100000-poems-adam")
    state.process_exited(2, ["error: poems.txt: no poems left after cleaning (2 lines read)"])
    app = app_for(tmp_path / "checkpoints", monkeypatch, welcome=False)

    async def run_before(pilot):
        pilot.app.run_state = state
        await pilot.press("ctrl+l")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_checkpoints(snap_compare, monkeypatch, fixed_root):
    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=settle)


def test_checkpoints_light_theme(snap_compare, monkeypatch, fixed_root):
    async def run_before(pilot):
        pilot.app.theme = "textual-light"
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_checkpoints_delete_asks_first(snap_compare, monkeypatch, fixed_root):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_resume_form(snap_compare, monkeypatch, fixed_root):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_generate_with_unknown_seed(snap_compare, monkeypatch, fixed_root):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("ctrl+g")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, GenerateScreen) and pilot.app.screen.sampler
        )
        pilot.app.screen.query_one("#seed-input", Input).insert_text_at_cursor("春龘")
        await settle(pilot)  # the change is seen: the check waits CHECK_AFTER_S after the last key
        await wait_for(pilot, lambda: not pilot.app.screen.check_pending)  # under load, longer than settle
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_generate_tones(snap_compare, monkeypatch, fixed_root):
    """Two known poems as a 格律 request shows them: marks under the characters, rhymes, verdicts."""
    poems = [SAMPLE, "床前明月光，疑是地上霜。举头望明月，低头思故乡。"]  # 登鹳雀楼 passes; 静夜思 is 古绝

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("ctrl+g")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, GenerateScreen) and pilot.app.screen.sampler
        )
        gen = pilot.app.screen
        gen.query_one("#field-gelv").value = "on"  # the form becomes 5 (a notification says so)
        await pilot.pause()
        gen.query_one("#field-rhyme", Input).insert_text_at_cursor("尤")
        settings = SampleSettings(form="5", lines=4, gelv=True, rhyme="尤", num=2, seed=7)
        block = PoemBlock(1, settings.to_dict(), gen.checkpoint_label)
        gen.blocks[1] = block
        gen.query_one("#poems-empty").display = False
        await gen.query_one("#poems").mount(block)
        block.finish(poems, [-4.87, -5.02], [tone_view(text) for text in poems])
        await settle(pilot)
        await wait_for(pilot, lambda: not gen.check_pending)  # the rhyme's check has run
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_compare_two_runs(snap_compare, monkeypatch, fixed_root):
    """space marks adam, then sgd (rows sorted by perplexity: adam's three, then sgd's); c compares."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("space", "down", "down", "space", "c")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "view", None) is not None)
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_fine_tune_form(snap_compare, monkeypatch, fixed_root):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)


def test_inspect(snap_compare, monkeypatch, fixed_root):
    from core.inspection.poem import Inspector

    real_inspect = Inspector.inspect

    def inspect(self, *args, **kwargs):
        """The real inspection; its float64 rounding error (the last digits differ between CPUs' kernels,
        5.5e-16 on one, 1.5e-15 on another) checked, then shown as one fixed figure."""
        result = real_inspect(self, *args, **kwargs)
        assert result["grad_check_max_rel_error"] < 1e-12
        return {**result, "grad_check_max_rel_error": 5.5e-16}

    monkeypatch.setattr(Inspector, "inspect", inspect)

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "result", None) is not None)
        await pilot.press("right", "right")
        await settle(pilot)

    assert snap_compare(app_for(fixed_root, monkeypatch), terminal_size=SIZE, run_before=run_before)
