"""The Compare screen driven with Pilot: space marks runs in Checkpoints, c compares them (both curves, one
colour per run, only the differing settings, deltas against a pinned baseline), x / l change the axes, the
palette opens the optimizer experiment's runs, esc goes back."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pilot_helpers import wait_for
from run_fixtures import build_run
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from poemtui.app import PoemApp
from poemtui.screens.checkpoints import CheckpointsScreen
from poemtui.screens.compare import CompareScreen
from poemtui.state.compare import Comparison

SIZE = (120, 36)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tui-compare") / "checkpoints"
    build_run(root, "adam", [900.0, 650.0, 700.0], speed=1.5, optimizer="adam")
    build_run(root, "sgd", [1400.0, 1200.0, 1100.0], speed=1.0, optimizer="sgd", lr=None)
    exp = root / "experiments" / "optimizers-tang300"
    build_run(exp, "adam", [800.0, 600.0], speed=2.0, optimizer="adam")
    build_run(exp, "rmsprop", [850.0, 610.0], speed=2.0, optimizer="rmsprop")
    return root


def test_comparison_state(root):
    view = Comparison.load([root / "adam", root / "sgd"])
    assert view.columns()[0] == "run" and view.columns()[-2:] == ["optimizer", "lr"]
    rows = view.rows()
    assert rows[0][0] == "adam (baseline)" and rows[1][0] == "sgd"
    assert rows[1][view.columns().index("Δ ppl")] == "+450.00"
    view.pin(1)
    assert view.rows()[0][view.columns().index("Δ ppl")] == "-450.00"
    assert [view.next_x() for _ in range(3)] == ["tokens", "minutes", "step"]
    (name, colour, points), _ = view.series("dev_ppl")
    assert name == "adam" and colour == "cyan" and points[0] == (20, 900.0)


def test_mark_two_runs_and_compare_by_keys(root):
    async def go():
        app = PoemApp(checkpoints_dir=root, python=sys.executable)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen) and app.screen.entries)
            screen = app.screen
            await pilot.press("c")  # nothing marked: a warning, no screen
            assert isinstance(app.screen, CheckpointsScreen)
            marked = set()
            while len(marked) < 2:
                entry = screen.selected
                if entry.path.parent in (root / "adam", root / "sgd") and entry.path.parent not in marked:
                    await pilot.press("space")
                    marked.add(entry.path.parent)
                else:
                    await pilot.press("down")
                await pilot.pause()
            assert set(screen.marked) == marked
            assert "2 marked" in str(screen.query_one("#summary").render())
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.view)
            compare = app.screen
            table = compare.query_one(DataTable)
            assert table.row_count == 2
            labels = [str(c.label) for c in table.columns.values()]
            assert labels[-2:] == ["optimizer", "lr"] and "hidden_size" not in labels
            assert labels[:2] == ["run", "best dev ppl"]
            assert "dev perplexity" in compare.query_one("#chart-ppl", PlotextPlot).plt._active.monitor.title
            await pilot.press("x")
            assert compare.view.x == "tokens"
            await pilot.press("l")
            assert compare.view.log_y is False
            await pilot.press("down", "b")
            assert compare.view.baseline == 1
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, CheckpointsScreen)

    asyncio.run(go())


def test_the_palette_opens_the_optimizer_experiment(root):
    async def go():
        app = PoemApp(checkpoints_dir=root, python=sys.executable)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"compare the optimizer")
            await pilot.pause(0.4)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.view)
            assert [r.name for r in app.screen.view.runs] == ["adam", "rmsprop"]

    asyncio.run(go())
