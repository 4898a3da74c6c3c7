"""The Inspect screen and fine-tuning from the workbench, driven with Pilot on a real small checkpoint:
i opens Inspect (surprisal colours, top-5 at a cursor moved with →, a unit's gates, tracking units,
‖∂L/∂h_t‖); f opens the training form prefilled to fine-tune (core.train --init-from), and its Start builds
that command; a bad "Start from" path is refused in the form."""

from __future__ import annotations

import asyncio
import sys

from pilot_helpers import wait_for
from textual.widgets import Input, Static

from poemtui.app import PoemApp
from poemtui.screens.checkpoints import CheckpointsScreen
from poemtui.screens.inspect import InspectScreen
from poemtui.screens.train_form import TrainFormScreen
from poemtui.state import train_options as opts

SIZE = (120, 36)


def rendered(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def test_inspect_a_poem_by_keys(tiny_run):
    async def go():
        app = PoemApp(checkpoints_dir=tiny_run.parent, python=sys.executable)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen) and app.screen.entries)
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.result)
            screen = app.screen
            assert "perplexity" in rendered(screen, "#poem-view")
            assert "predicted there" in rendered(screen, "#top5")
            assert "‖∂L/∂h_t‖" in rendered(screen, "#grads")
            assert "position in the line" in rendered(screen, "#units")
            first_unit = rendered(screen, "#heat").splitlines()[0]
            await pilot.press("right", "right")
            assert screen.cursor == 2 and rendered(screen, "#top5").startswith("3/")
            await pilot.press("u")
            assert rendered(screen, "#heat").splitlines()[0] != first_unit
            await pilot.press("e")
            field = screen.query_one("#poem-input", Input)
            assert field.has_focus
            field.value = "床前明月光，疑是地上霜。"
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.result and screen.result["chars"][0] == "床")
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, CheckpointsScreen)

    asyncio.run(go())


def test_fine_tune_from_a_checkpoint(tiny_run, tmp_path):
    async def go():
        app = PoemApp(checkpoints_dir=tiny_run.parent, python=sys.executable)
        launched = []
        app.launch = launched.append  # the command, not a training child
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen) and app.screen.entries)
            entry = app.screen.selected
            await pilot.press("f")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainFormScreen) and app.screen.is_mounted)
            form = app.screen
            fields = form.fields()
            await wait_for(pilot, lambda: fields["init_from"].text)
            assert fields["init_from"].text == str(entry.path)
            assert fields["hidden_size"].text == "32" and fields["hidden_size"].control.disabled
            assert "Fine-tuning" in rendered(form, "#banner")
            assert not form.problems, form.problems
            await pilot.press("ctrl+s")
            await pilot.pause()
            (launch,) = launched
            command = launch.command
            assert command[command.index("--init-from") + 1] == str(entry.path.resolve())
            assert "--hidden-size" not in command and "--preset" not in command
            fields["init_from"].set_text(str(tmp_path / "none.safetensors"))
            await pilot.pause()
            assert "init_from" in form.problems
            fields["init_from"].set_text("")
            await pilot.pause()
            assert not fields["hidden_size"].control.disabled

    asyncio.run(go())


def test_fine_tune_values_keep_the_model_and_take_the_schedule(tiny_checkpoint):
    from core.runs.checkpoint import read_meta
    from core.training.settings import FINE_TUNE

    meta = read_meta(tiny_checkpoint)
    values = opts.fine_tune_values(meta["train"], meta["model"], tiny_checkpoint)
    assert values["hidden_size"] == 32 and values["lr"] == FINE_TUNE["lr"]
    options = opts.train_options(values, preset="quick")
    assert options["init_from"] == str(tiny_checkpoint.resolve()) and "preset" not in options


def test_inspect_without_the_run_corpus_still_shows_the_poem(tiny_checkpoint, monkeypatch):
    """The unit search needs the run's corpus; when it is gone the rest is shown and a warning says why."""
    from core.errors import CorpusError
    from core.inspection import Inspector

    def gone(self, limit=None):
        raise CorpusError("poems.txt: no such file")

    monkeypatch.setattr(Inspector, "units", gone)

    async def go():
        app = PoemApp(checkpoints_dir=tiny_checkpoint.parent.parent, python=sys.executable)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen) and app.screen.entries)
            app.open_inspect(tiny_checkpoint)
            await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.result)
            assert "search skipped" in rendered(app.screen, "#units")
            assert any("no such file" in str(n.message) for n in app._notifications)

    asyncio.run(go())
