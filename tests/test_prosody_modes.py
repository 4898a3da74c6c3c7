"""The prosody modes of the sampler (--prosody none|soft-rhyme|rhyme|soft|gelv) do what they say."""

from __future__ import annotations

import pytest
import torch

from core.corpus.lines import split_lines
from core.gelv import Gelv
from core.generation.quality import is_valid_form
from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings
from core.options import OptionError

PURE = dict(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_repeats=0)


@pytest.fixture(scope="module")
def sampler(tiny_checkpoint) -> Sampler:
    return Sampler.from_checkpoint(tiny_checkpoint, precision="fp32")


def test_rhyme_mode_even_lines_share_a_ping_group(sampler):
    gelv = Gelv.load()
    for form, lines in (("5", 4), ("7", 8), ("auto", None)):
        poems = sampler.generate(
            SampleSettings(form=form, lines=lines, prosody="rhyme", num=12, seed=4, **PURE)
        )
        for p in poems:
            body = split_lines(p.text)
            assert is_valid_form(p.text), p.text
            ends = [line[-1] for line in body[1::2]]
            shared = frozenset.intersection(*(gelv.ping_groups(ch) for ch in ends))
            assert shared, p.text  # one 平 group holds every even line's last character
            assert len(set(ends)) == len(ends), p.text  # none rhymes twice
            first = body[0][-1]
            if gelv.tones(first) == {"平"}:  # a 平-only first line end rhymes too (首句入韵)
                assert gelv.ping_groups(first) & shared, p.text


def test_rhyme_mode_takes_a_chosen_group(sampler):
    gelv = Gelv.load()
    for p in sampler.generate(SampleSettings(form="5", prosody="rhyme", rhyme="东", num=6, seed=1)):
        assert all("东" in gelv.ping_groups(line[-1]) for line in split_lines(p.text)[1::2]), p.text


def test_soft_mode_with_a_large_weight_passes_the_checker(sampler):
    gelv = Gelv.load()
    for form, lines in (("5", 4), ("7", 8), ("auto", None)):
        settings = SampleSettings(
            form=form, lines=lines, prosody="soft", prosody_weight=100, num=10, seed=2, **PURE
        )
        for p in sampler.generate(settings):
            assert gelv.check(p.text).passed, p.text


def test_soft_rhyme_with_weight_zero_is_none(sampler):
    """A soft mode only reweights: at weight 0 it draws the very poems of `none`."""
    none = sampler.generate(SampleSettings(form="7", prosody="none", num=6, seed=8, **PURE))
    soft = sampler.generate(
        SampleSettings(form="7", prosody="soft-rhyme", prosody_weight=0, num=6, seed=8, **PURE)
    )
    assert [p.text for p in none] == [p.text for p in soft]


def test_none_with_pure_settings_masks_only_the_form(sampler):
    """τ 1, no truncation, no penalty, max_repeats 0, prosody none: the model's distribution over what the
    form allows, nothing hidden (no repeat ban, no duplicate-line ban, no prosody weight)."""
    settings, _ = sampler.check(SampleSettings(start="山山山山", form="5", prosody="none", **PURE))
    ids = [sampler.vocab.stoi[c] for c in settings.start]
    shape = sampler._prime(settings, ids)
    assert shape.banned() == set() and shape.verse is None and shape.gelv is None
    mask, penalty = sampler._mask_row(shape)
    assert penalty is None and torch.equal(mask, sampler.content)
    logits = 4 * torch.randn(1, len(sampler.vocab), generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    draws = [sampler._choose(logits, [shape], [list(ids)], settings, gen)[0] for _ in range(4000)]
    expected = torch.softmax(logits[0].masked_fill(~sampler.content, float("-inf")), dim=-1)
    assert all(sampler.content[t] for t in draws)
    for t in expected.topk(3).indices.tolist():
        assert abs(draws.count(t) / len(draws) - float(expected[t])) < 0.03


def test_gelv_switch_is_prosody_gelv(sampler):
    a, _ = sampler.check(SampleSettings(form="5", gelv=True))
    b, _ = sampler.check(SampleSettings(form="5", prosody="gelv"))
    assert a.prosody == b.prosody == "gelv" and a.gelv and b.gelv
    pa = sampler.generate(SampleSettings(form="5", gelv=True, num=3, seed=5))
    pb = sampler.generate(SampleSettings(form="5", prosody="gelv", num=3, seed=5))
    assert [p.text for p in pa] == [p.text for p in pb] and all(p.pattern for p in pa)


@pytest.mark.parametrize(
    "values, field",
    [
        (dict(prosody="gelv"), "prosody"),  # gelv needs form 5 or 7
        (dict(gelv=True, prosody="soft", form="5"), "prosody"),
        (dict(rhyme="东", prosody="none"), "rhyme"),  # prosody none: nothing rhymes
        (dict(prosody="rhyme", rhyme="东", form="free"), "rhyme"),
    ],
)
def test_combinations_that_do_not_go_together(values, field):
    assert field in SampleSettings.problems(values)
    with pytest.raises(OptionError):
        SampleSettings(**values).check()


def test_generate_each_keeps_every_poems_start_and_form(sampler):
    wanted = [("山", "5", 4), ("月", "7", 4), ("春", "5", 8), ("江", "7", 8)]
    each = [
        sampler.check(SampleSettings(start=s, form=f, lines=n, prosody="rhyme", **PURE))[0]
        for s, f, n in wanted
    ]
    poems = sampler.generate_each(each, torch.Generator().manual_seed(0))
    for (start, form, lines), p in zip(wanted, poems, strict=True):
        body = split_lines(p.text)
        assert p.text[0] == start and len(body) == lines and {len(x) for x in body} == {int(form)}, p.text
