"""The sampler's form rules (core/generation/form.py PoemForm, applied by core/generation/sampler.py) hold
whatever the model says.

The model here is a stub with the real tang300 vocabulary: an nn.Module whose logits are random, or
adversarial (it wants to end the poem at once, to end every line at once, never to end, one character over
and over, the acrostic's characters everywhere), at scales from flat to 1e4. The rules must still give the
shape asked for: 5 or 7 characters × 4 or 8 lines exactly; a regular poem for the auto form; acrostic
characters at the line heads; no character sampled past max_repeats and no line twice (unless max_repeats
is 0, which lifts both); and a poem that ends.
(These replace hypothesis tests that sampled from a trained checkpoint: a trained model is a mild
adversary, and each example cost a forward pass of it.)
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from core.corpus.lines import FINAL_ENDS, LINE_ENDS, split_lines
from core.corpus.vocab import EOS
from core.errors import SeedError
from core.generation.quality import has_repeated_line, is_valid_form
from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings

COMMON = "山水月日风花春秋人天云江"  # characters every tang300 vocabulary has
WANTS = ["nothing", "end", "line_end", "never_end", "one_char", "acrostic"]


class StubModel(nn.Module):
    """Stands in for PoetryLM: logits = scale · noise + boost on the tokens it `wants`, for every position,
    whatever it is fed. Its own generator: the same stub gives the same poems."""

    def __init__(self, vocab, wants: str, scale: float, boost: float, seed: int, favourites: str = ""):
        super().__init__()
        self.size, self.scale, self.boost = len(vocab), scale, boost
        self.generator = torch.Generator().manual_seed(seed)
        ids = {
            "nothing": [],
            "end": [EOS, vocab.stoi["。"]],
            "line_end": [vocab.stoi[c] for c in LINE_ENDS if c in vocab.stoi],
            "one_char": [vocab.stoi[favourites[:1] or "山"]],
            "acrostic": [vocab.stoi[c] for c in favourites or COMMON],
        }
        self.sign = -1.0 if wants == "never_end" else 1.0
        self.ids = torch.tensor(ids.get(wants, ids["line_end"] + [EOS]), dtype=torch.long)

    def forward(self, inputs, state=None, lengths=None, mask=None):
        b, t = inputs.shape
        logits = self.scale * torch.randn(b, t, self.size, generator=self.generator)
        logits[..., self.ids] += self.sign * self.boost
        return logits, state


@pytest.fixture(scope="module")
def vocab(tang300):
    return tang300.build_vocab()


def stub_sampler(vocab, draw_args) -> Sampler:
    return Sampler(StubModel(vocab, **draw_args), vocab)


models = st.fixed_dictionaries(
    {
        "wants": st.sampled_from(WANTS),
        "scale": st.sampled_from([0.0, 1.0, 5.0, 30.0]),
        "boost": st.sampled_from([0.0, 3.0, 50.0, 1e4]),
        "seed": st.integers(0, 2**16),
    }
)
sampling = st.fixed_dictionaries(
    {
        "temperature": st.one_of(st.just(0.0), st.floats(0.05, 3.0)),
        "top_k": st.sampled_from([0, 1, 5, 50]),
        "top_p": st.sampled_from([1.0, 0.9, 0.3, 0.01]),
        "repetition_penalty": st.sampled_from([1.0, 1.1, 3.0]),
        "seed": st.integers(0, 2**16),
        "num": st.integers(1, 3),
    }
)
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def forced_positions(text: str, start: str, acrostic: str) -> set[int]:
    """Indices in `text` of characters the user imposed: the seed, and each line's acrostic head."""
    forced = set(range(len(start)))
    line, at_head = 0, True
    for i, ch in enumerate(text):
        if ch in LINE_ENDS:
            line, at_head = line + 1, True
            continue
        if at_head and line < len(acrostic):
            forced.add(i)
        at_head = False
    return forced


def assert_common_rules(poem, s: SampleSettings, max_lines: int) -> list[str]:
    """What every poem keeps: it starts with the seed, ends, has its acrostic at the line heads, and no
    character is sampled once it has been used max_repeats times. Returns its lines."""
    text = poem.text
    body = split_lines(text)
    assert text.startswith(s.start), (text, s.start)
    assert text[-1] in FINAL_ENDS, f"the poem did not end: {text}"
    assert 1 <= len(body) <= max_lines and all(body), text
    for k, ch in enumerate(s.acrostic):
        assert body[k][0] == ch, (text, s.acrostic)
    counts: Counter[str] = Counter()
    forced = forced_positions(text, s.start, s.acrostic)
    for i, ch in enumerate(text):
        if ch in LINE_ENDS:
            continue
        if s.max_repeats and i not in forced:
            assert counts[ch] < s.max_repeats, f"「{ch}」 sampled past max_repeats={s.max_repeats}: {text}"
        counts[ch] += 1
    assert len(poem.logprobs) == len(text) - len(s.start)  # the seed is given, not sampled
    return body


@PROPERTY
@given(
    model=models,
    sample=sampling,
    form=st.sampled_from(["5", "7"]),
    lines=st.sampled_from([4, 8]),
    acrostic=st.text(alphabet=COMMON, max_size=8),
    start_len=st.integers(0, 6),
    max_repeats=st.integers(0, 4),
)
def test_fixed_forms_have_exactly_their_shape(
    vocab, model, sample, form, lines, acrostic, start_len, max_repeats
):
    n = int(form)
    acrostic = acrostic[:lines]
    start = (acrostic[:1] + "春江花月夜风")[: min(start_len, n)] if start_len else ""
    if max_repeats and start:  # a seed that itself repeats a character too often is refused: not here
        max_repeats = max(max_repeats, *Counter(start).values())
    model["favourites"] = acrostic
    s = SampleSettings(
        form=form, lines=lines, acrostic=acrostic, start=start, max_repeats=max_repeats, **sample
    )
    for poem in stub_sampler(vocab, model).generate(s):
        body = assert_common_rules(poem, s, lines)
        assert len(body) == lines and all(len(line) == n for line in body), poem.text
        assert is_valid_form(poem.text), poem.text  # ，after odd lines, 。after even ones
        assert not (s.max_repeats and has_repeated_line(poem.text)), poem.text  # max_repeats 0: no limit


@PROPERTY
@given(
    model=models,
    sample=sampling,
    acrostic=st.text(alphabet=COMMON, max_size=8),
    max_repeats=st.integers(0, 4),
)
def test_the_auto_form_gives_a_regular_poem(vocab, model, sample, acrostic, max_repeats):
    model["favourites"] = acrostic
    s = SampleSettings(acrostic=acrostic, max_repeats=max_repeats, **sample)
    for poem in stub_sampler(vocab, model).generate(s):
        body = assert_common_rules(poem, s, 8)
        assert is_valid_form(poem.text), poem.text  # 4 or 8 lines, all of 5 or all of 7
        assert len(body) >= len(acrostic)
        assert not (max_repeats and has_repeated_line(poem.text)), poem.text  # max_repeats 0: no limit


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model=models,
    sample=sampling,
    acrostic=st.text(alphabet=COMMON, max_size=6),
    start_len=st.integers(0, 3),
    max_chars=st.integers(16, 64),
    max_repeats=st.integers(0, 4),
)
def test_a_free_form_poem_always_ends_cleanly(
    vocab, model, sample, acrostic, start_len, max_chars, max_repeats
):
    model["favourites"] = acrostic
    max_chars = max(max_chars, 4 * (len(acrostic) + len(acrostic) % 2))  # else refused: the test below
    start = (acrostic[:1] + "春江花")[:start_len] if start_len else ""
    if max_repeats and start:
        max_repeats = max(max_repeats, *Counter(start).values())
    s = SampleSettings(
        form="free", start=start, acrostic=acrostic, max_chars=max_chars, max_repeats=max_repeats, **sample
    )
    for poem in stub_sampler(vocab, model).generate(s):
        body = assert_common_rules(poem, s, max_chars)
        assert len(poem.text) <= max_chars, poem.text
        assert len(body) >= max(4, len(acrostic)) and len(body) % 2 == 0, poem.text
        assert all(3 <= len(line) <= 11 for line in body), poem.text  # lines of 3 to 11 characters


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=models, sample=sampling, form=st.sampled_from(["5", "7"]), lines=st.sampled_from([4, 8]))
def test_gelv_poems_pass_the_checker_whatever_the_model_says(vocab, gelv, model, sample, form, lines):
    s = SampleSettings(form=form, lines=lines, gelv=True, **sample)
    for poem in stub_sampler(vocab, model).generate(s):
        result = gelv.check(poem.text)
        assert result.passed, (poem.text, result.to_json()["faults"])
        assert poem.pattern and poem.pattern.startswith(("五", "七"))


@pytest.fixture(scope="module")
def gelv():
    from core.gelv import Gelv

    return Gelv.load()


@pytest.mark.parametrize("value", [float("-inf"), float("nan")])
def test_non_finite_logits_still_give_the_asked_form(vocab, value):
    class Broken(nn.Module):
        def forward(self, inputs, state=None, lengths=None, mask=None):
            return torch.full((*inputs.shape, len(vocab)), value), state

    poem = Sampler(Broken(), vocab).generate(SampleSettings(form="5", seed=1))[0]
    assert is_valid_form(poem.text), poem.text


@pytest.mark.parametrize(
    "scale, start, acrostic, temperature, max_chars",
    [
        # the minimal cases hypothesis found while the line end forced at max_chars followed the line
        # count's parity: it could be 「，」, and the poem ran on past max_chars, unfinished
        (0.0, "", "", 0.0, 26),  # was 28 characters, then the step budget: 「…，不不不，不，不。」, no <eos>
        (1.0, "", "云云云云云", 0.0, 26),  # was cut off at 28 with 4 of the 5 acrostic lines: 「…，云，云。」
        (0.0, "春江花", "", 1.0, 16),  # was 20 characters: 「…，涌打向。墟，终。」
        (1.0, "", "云云云云云", 0.0, 24),  # six lines of 3 and their marks fill 24 exactly
    ],
)
def test_a_free_form_poem_ends_within_max_chars(vocab, scale, start, acrostic, temperature, max_chars):
    """Models with no preference (scale 0) or a mild random one: minimal cases hypothesis found."""
    s = SampleSettings(
        form="free", start=start, acrostic=acrostic, max_chars=max_chars, temperature=temperature,
        top_p=1.0, repetition_penalty=1.0, max_repeats=0, seed=0,
    )  # fmt: skip
    poem = stub_sampler(vocab, dict(wants="nothing", scale=scale, boost=0.0, seed=0)).generate(s)[0]
    body = split_lines(poem.text)
    assert len(poem.text) <= max_chars and poem.text[-1] in FINAL_ENDS, poem.text
    assert len(body) % 2 == 0 and all(3 <= len(line) <= 11 for line in body), poem.text
    assert [line[0] for line in body[: len(acrostic)]] == list(acrostic), poem.text


@pytest.mark.parametrize(
    "start, acrostic, max_chars, says",
    [
        ("", "云云云云云", 23, "an acrostic of 5 characters needs 6 free lines, at least 24 characters"),
        ("春江花月夜春江花月夜", "", 16, "needs 「，」 to end within --max-chars 16"),
    ],
)
def test_a_free_form_poem_that_cannot_fit_max_chars_is_refused(vocab, start, acrostic, max_chars, says):
    s = SampleSettings(form="free", start=start, acrostic=acrostic, max_chars=max_chars, max_repeats=0)
    with pytest.raises(SeedError, match=re.escape(says)):
        stub_sampler(vocab, dict(wants="nothing", scale=0.0, boost=0.0, seed=0)).generate(s)
