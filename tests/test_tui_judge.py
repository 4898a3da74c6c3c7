"""The workbench and the judge: the Generate screen's poems against real ones of the same forms, the palette's
"Judge the selected checkpoint" (a worker, a progress bar, the JSON beside the checkpoint), and the
Checkpoints screen's detail panel showing it. The real app under Pilot, a real small checkpoint."""

from __future__ import annotations

import json

from pilot_helpers import text_of, wait_for
from test_tui import SIZE, copy_run, make_app, palette, run_async, type_into
from textual.widgets import ProgressBar, Select

from core.generation.sampler import Sampler
from poemtui.dialogs.judge import JudgeDialog
from poemtui.screens.checkpoints import CheckpointsScreen
from poemtui.screens.generate import GenerateScreen
from poemtui.state.judgement import judgement_path, read_judgement, real_forms, session_figures
from poemtui.widgets.session_figures import SessionFigures

POEMS = 20  # the palette judge's poems here: the figures are not the point, the plumbing is


def test_session_figures_match_forms_and_sizes(tang300):
    """Real rates are weighted by the session's forms; real distinct-2 is over as many real poems of each."""
    recorded = {"name": "tang300", "options": {"script": "simplified"}}
    real = real_forms(recorded)
    assert real is real_forms(recorded)  # once per corpus
    assert {"五绝", "七绝"} <= set(real.rates)
    wu, qi = real.poems["五绝"][:3], real.poems["七绝"][:1]
    figures = session_figures(wu + qi + ["山水长流不尽时"], real)  # the last one is free: left out
    assert figures["regular"] == 4 and figures["forms"] == {"五绝": 3, "七绝": 1}
    want = (3 * real.rates["五绝"]["rhyme_rate"] + real.rates["七绝"]["rhyme_rate"]) / 4
    assert abs(figures["real"]["rhyme_rate"] - want) < 1e-9
    # the same poems as the real reference: the same distinct-2
    assert figures["generated"]["distinct_2"] == figures["real"]["distinct_2"]


@run_async
async def test_generate_screen_sets_the_session_against_real_poems(tmp_path, tiny_run):
    root = tmp_path / "checkpoints"
    run = copy_run(tiny_run, root)
    vocab = Sampler.from_checkpoint(run / "best.safetensors").vocab
    app = make_app(root, welcome=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen))
        gen = app.screen
        await wait_for(pilot, lambda: gen.sampler is not None, what="the checkpoint to load")
        figures = gen.query_one(SessionFigures)
        assert not figures.display  # no poems yet
        await wait_for(pilot, lambda: figures.real is not None, what="the real figures")
        await type_into(pilot, "#seed-input", next(ch for ch in "春山月风花" if ch in vocab.stoi))
        gen.query_one("#field-form", Select).value = "5"
        gen.query_one("#field-prosody", Select).value = "none"
        await pilot.pause()
        assert gen.query_one("#field-rhyme").disabled
        gen.query_one("#field-prosody", Select).value = "rhyme"  # --prosody on the screen too
        await pilot.pause()
        assert not gen.query_one("#field-rhyme").disabled  # a rhyming mode takes a rhyme group
        await type_into(pilot, "#field-num", "3", settle=0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: figures.figures is not None, what="the session's figures")
        assert gen.history()[0].settings["prosody"] == "rhyme"
        assert figures.figures["regular"] == 3 and figures.figures["forms"] == {"五绝": 3}
        assert "real" in text_of(figures) and "distinct-2" in text_of(figures)
        gen.query_one("#seed-input").focus()
        await pilot.press("enter")  # more poems: the figures follow
        await wait_for(pilot, lambda: figures.figures and figures.figures["regular"] == 6, what="6 poems")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not figures.display


@run_async
async def test_palette_judges_the_highlighted_checkpoint_and_the_detail_shows_it(tmp_path, tiny_run):
    root = tmp_path / "checkpoints"
    run = copy_run(tiny_run, root)
    app = make_app(root, welcome=False)
    app.judge_poems = POEMS
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.selected is not None, what="the listing")
        chosen = screen.selected.path
        assert not screen.query_one("#detail-judge").display  # nothing judged yet
        await palette(pilot, "judge the selected")
        await wait_for(pilot, lambda: isinstance(app.screen, JudgeDialog), what="the judge dialog")
        dialog = app.screen
        bar = dialog.query_one(ProgressBar)
        done = lambda: dialog.result is not None or dialog.error  # noqa: E731
        await wait_for(pilot, done, timeout=120, what="the judge")
        assert dialog.error is None and bar.progress == bar.total
        saved = json.loads(judgement_path(chosen).read_text(encoding="utf-8"))
        assert saved["poems"] <= POEMS and {"ngram", "neural"} == set(saved["discriminators"])
        assert read_judgement(chosen) == (saved, True)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="the checkpoints screen")
        detail = screen.query_one("#detail-judge")
        assert detail.display
        shown = text_of(detail)
        for words in ("rhyme", "格律 pass", "distinct-2", "n-gram acc.", "neural acc.", "settings"):
            assert words in shown
        assert run.exists()
