"""格律: the patterns, the checker and the sampling masks, on poems built from real table characters."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from core.gelv import (
    Gelv,
    GelvConstraint,
    GelvError,
    ToneMasks,
    pattern_by_name,
    patterns,
    patterns_for,
    read_regular_lines,
)
from core.gelv.checker import named_faults
from core.gelv.patterns import FORMS, PING, ZE, opposite
from core.gelv.report import FAMOUS, tang300_poems

ALL_PATTERNS = [p for shape in FORMS for p in patterns(*shape)]


@pytest.fixture(scope="module")
def gelv():
    return Gelv.load()


@pytest.fixture(scope="module")
def pool(gelv, tang300):
    """Real characters of tang300's vocabulary by what the table says of them."""
    vocab = [c for c in tang300.build_vocab().itos if len(c) == 1]
    single = {t: [c for c in vocab if gelv.tones(c) == {t}] for t in (PING, ZE)}
    both = [c for c in vocab if len(gelv.tones(c)) == 2]
    by_group: dict[str, list[str]] = {}
    for c in single[PING]:
        if len(gelv.rhyme_groups(c)) == 1 and len(gelv.ping_groups(c)) == 1:
            by_group.setdefault(next(iter(gelv.ping_groups(c))), []).append(c)
    groups = sorted((g for g, cs in by_group.items() if len(cs) >= 6), key=lambda g: -len(by_group[g]))
    return {"single": single, "both": both, "by_group": by_group, "groups": groups}


def build(pattern, pool, rng, group=None):
    """A poem that fits `pattern` exactly: single-tone characters, rhymes from one group."""
    group = group or pool["groups"][0]
    rhymes = rng.sample(pool["by_group"][group], len(pattern.rhyme_lines))
    lines = []
    for i, tones in enumerate(pattern.lines):
        line = [rng.choice(pool["single"][t]) for t in tones]
        if i in pattern.rhyme_lines:
            line[-1] = rhymes.pop()
        lines.append(line)
    return lines


def text(lines):
    return ["".join(line) for line in lines]


# ---------------------------------------------------------------- patterns


def test_patterns_are_the_textbook_ones():
    assert pattern_by_name("五绝·仄起·首句不入韵").lines == (
        "仄仄平平仄",
        "平平仄仄平",
        "平平平仄仄",
        "仄仄仄平平",
    )
    assert pattern_by_name("七绝·平起·首句入韵").lines == (
        "平平仄仄仄平平", "仄仄平平仄仄平", "仄仄平平平仄仄", "平平仄仄仄平平",
    )  # fmt: skip


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=lambda p: p.name)
def test_every_pattern_keeps_the_rules(pattern):
    n = pattern.chars_per_line
    for i, line in enumerate(pattern.lines):
        assert len(line) == n
        keys = line[1::2][: n // 2]  # 2nd, 4th (6th)
        assert all(a != b for a, b in itertools.pairwise(keys)), "二四(六) must alternate"
        assert line[-1] == (PING if i in pattern.rhyme_lines else ZE)
        assert named_faults(line) == [], "a base pattern has neither 孤平 nor 三平尾"
        if i % 2 == 1:
            assert line[1] == opposite(pattern.lines[i - 1][1]), "对"
        elif i > 0:
            assert line[1] == pattern.lines[i - 1][1], "粘"
    assert pattern.lines[0][1] == (PING if pattern.level_start else ZE)
    assert pattern_by_name(pattern.name) == pattern


# ---------------------------------------------------------------- checker


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=lambda p: p.name)
def test_a_poem_built_on_a_pattern_passes_and_is_recognised(gelv, pool, pattern):
    lines = build(pattern, pool, random.Random(pattern.name))
    result = gelv.check(text(lines))
    assert result.passed, result.faults
    assert result.pattern == pattern
    assert result.rhyme_ok and result.rhyme_group == pool["groups"][0]
    assert result.conformity == 1.0 and result.strict_conformity == 1.0


def test_a_wrong_tone_at_a_fixed_position_fails_and_a_free_one_does_not(gelv, pool):
    pattern = pattern_by_name("七律·平起·首句入韵")
    rng = random.Random(1)
    for i in range(pattern.n_lines):
        for j in range(pattern.chars_per_line - 1):  # the last character is the rhyme's business
            lines = build(pattern, pool, rng)
            lines[i][j] = rng.choice(pool["single"][opposite(pattern.tone(i, j))])
            result = gelv.check(text(lines), pattern)
            if pattern.is_free(i, j):
                assert all(f.kind in ("孤平", "三平尾") for f in result.faults), (i, j, result.faults)
                assert bool(result.faults) == (pattern.guards(i, j) is not None)
            else:  # the wrong tone may also leave a lone 平 (孤平) in its line
                found = [(f.kind, f.line, f.col) for f in result.faults]
                assert ("tone", i, j) in found, found
                assert all(kind in ("tone", "孤平") and line == i for kind, line, _ in found), found


def test_guPing_is_flagged_and_its_rescue_accepted(gelv, pool):
    pattern = pattern_by_name("五律·仄起·首句不入韵")
    i = pattern.lines.index("平平仄仄平")
    lines = build(pattern, pool, random.Random(2))
    lines[i][0] = pool["single"][ZE][0]  # 仄平仄仄平
    result = gelv.check(text(lines), pattern)
    assert [f.kind for f in result.faults] == ["孤平"] and result.lines[i].conform[0] is False
    lines[i][2] = pool["single"][PING][0]  # 仄平平仄平: the customary rescue
    assert gelv.check(text(lines), pattern).passed


def test_three_level_tones_at_the_end_are_flagged(gelv, pool):
    pattern = pattern_by_name("七绝·仄起·首句入韵")
    i = pattern.lines.index("平平仄仄仄平平")
    lines = build(pattern, pool, random.Random(3))
    lines[i][4] = pool["single"][PING][0]
    assert [f.kind for f in gelv.check(text(lines), pattern).faults] == ["三平尾"]


def test_te_ao_form_is_accepted_only_with_its_first_character_level(gelv, pool):
    pattern = pattern_by_name("五律·平起·首句不入韵")
    i = pattern.lines.index("平平平仄仄")
    lines = build(pattern, pool, random.Random(4))
    lines[i][2:4] = [pool["single"][ZE][0], pool["single"][PING][0]]  # 平平仄平仄
    result = gelv.check(text(lines), pattern)
    assert result.passed and result.lines[i].variant == "特拗"
    lines[i][0] = pool["single"][ZE][1]  # 仄平仄平仄
    assert not gelv.check(text(lines), pattern).passed


def test_a_character_with_both_tones_fits_either(gelv, pool):
    pattern = pattern_by_name("五绝·平起·首句不入韵")
    lines = build(pattern, pool, random.Random(5))
    lines[0][1] = lines[1][1] = pool["both"][0]  # 平 then 仄 positions
    result = gelv.check(text(lines), pattern)
    assert result.passed
    assert result.lines[0].readings[1] == "中" and result.lines[0].tones[1] == PING
    assert result.lines[1].tones[1] == ZE


def test_unknown_tone_fails_a_fixed_position_only(gelv, pool):
    unknown = next(chr(cp) for cp in range(0x4E00, 0x9FFF) if not gelv.tones(chr(cp)))
    pattern = pattern_by_name("五绝·仄起·首句不入韵")
    lines = build(pattern, pool, random.Random(6))
    lines[0][0] = unknown
    assert gelv.check(text(lines), pattern).passed
    lines[0][1] = unknown
    assert [f.kind for f in gelv.check(text(lines), pattern).faults] == ["unknown_tone"]


def test_a_rhyme_outside_the_group_is_flagged(gelv, pool):
    pattern = pattern_by_name("五律·平起·首句入韵")
    lines = build(pattern, pool, random.Random(7))
    other = pool["by_group"][pool["groups"][1]][0]
    lines[5][-1] = other
    result = gelv.check(text(lines), pattern)
    assert not result.rhyme_ok
    assert [(f.kind, f.line, f.char) for f in result.faults] == [("rhyme", 5, other)]


def test_famous_regulated_poems_of_tang300_pass(gelv):
    poems = tang300_poems()
    for title, author in FAMOUS:
        poem = next(p for p in poems if p["title"] == title and p["author"] == author)
        result = gelv.check(poem["text"])
        assert result.passed, (title, [f.message for f in result.faults])


def test_input_forms_agree(gelv, tang300):
    """Traditional or Simplified, punctuated, spaced or run together: the same lines."""
    traditional = next(p for p in tang300_poems() if p["title"] == "登高")["text"]  # the source's own text
    lines = read_regular_lines(traditional)
    assert [len(line) for line in lines] == [7] * 8 and "".join(lines) not in traditional
    simplified = next(p for p in tang300.poems if p.startswith(lines[0]))
    run_together = "".join(lines)
    spaced = " ".join(lines[:4]) + "\n" + "\n".join(lines[4:])
    assert (
        read_regular_lines(simplified)
        == read_regular_lines(run_together)
        == read_regular_lines(spaced)
        == lines
    )
    assert gelv.check(traditional).to_json() == gelv.check(spaced).to_json()


@pytest.mark.parametrize(
    ("poem", "says"),
    [
        ("床前明月光，疑是地上霜。", "2 lines of 5, 5"),
        ("一二三四五，一二三四五六。一二三四五，一二三四五。", "4 lines of 5, 6, 5, 5"),
        ("hello world", "no Chinese characters"),
    ],
)
def test_irregular_input_is_refused_with_the_reason(gelv, poem, says):
    with pytest.raises(GelvError, match=says):
        gelv.check(poem)


def test_rhyme_group_names(gelv):
    assert {gelv.resolve_group(n) for n in ("东", "一东", "上平声一东", "東", "上平聲一東")} == {"东"}
    assert gelv.resolve_group("十一尤") == "尤"
    with pytest.raises(GelvError, match="not a 平水韵 平声 group"):
        gelv.resolve_group("董")


def test_result_json_has_the_contract_keys(gelv, pool):
    result = gelv.check(text(build(patterns(5, 4)[0], pool, random.Random(8))))
    out = result.to_json()
    assert {"passed", "pattern", "tones", "rhyme_ok", "faults"} <= out.keys()
    assert out["passed"] is True and out["faults"] == [] and len(out["tones"]) == 4
    assert out["rhyme_positions"] == [[1, 5], [2, 5], [4, 5]]


# ---------------------------------------------------------------- constrained sampling


@pytest.fixture(scope="module")
def masks(tang300):
    return ToneMasks(tang300.build_vocab().itos)


def sample(masks, pattern, rng, rhyme=None):
    """Uniform sampling among the allowed characters: the weakest sampler the masks must still tame."""
    state = GelvConstraint(masks, pattern, rhyme)
    while not state.done:
        state.push(masks.itos[rng.choice(np.flatnonzero(state.allowed()))])
    return "".join(state.chars), state


@pytest.mark.parametrize("shape", list(FORMS), ids=lambda s: FORMS[s])
def test_constrained_sampling_always_passes(gelv, masks, shape):
    rng = np.random.default_rng(sum(shape))
    for pattern in patterns(*shape):
        for _ in range(8):
            poem, state = sample(masks, pattern, rng)
            result = gelv.check(poem, pattern)
            assert result.passed, (poem, [f.message for f in result.faults])
            assert state.conflicts == []
            assert result.rhyme_group in state.groups


def test_unconstrained_sampling_rarely_passes(gelv, masks):
    rng = np.random.default_rng(0)
    hanzi = np.flatnonzero(masks.hanzi)
    passed = sum(gelv.check("".join(masks.itos[i] for i in rng.choice(hanzi, 20))).passed for _ in range(200))
    assert passed < 10


def test_a_chosen_rhyme_group_is_kept(gelv, masks):
    poem, _ = sample(masks, pattern_by_name("七律·平起·首句入韵"), np.random.default_rng(1), rhyme="一东")
    assert gelv.check(poem).rhyme_group == "东"


def test_masks_cover_only_characters(masks):
    assert not masks.hanzi[:4].any() and masks.hanzi.sum() > 2000
    assert (masks.ping | masks.ze).sum() <= masks.hanzi.sum()
    with pytest.raises(ValueError):
        masks.ping[5] = True
    assert masks.rhyme_allowed("尤")[masks.stoi["楼"]]


def test_a_forced_character_that_does_not_fit_is_kept_and_reported(gelv, masks, pool):
    pattern = pattern_by_name("五绝·仄起·首句不入韵")
    state = GelvConstraint(masks, pattern)
    state.push(pool["single"][PING][0], forced=True)  # col 0 is free: no conflict
    wrong = pool["single"][PING][1]  # col 1 wants 仄
    state.push(wrong, forced=True)
    assert state.conflicts == [
        {"line": 1, "position": 2, "char": wrong, "forced": True, "reason": state.conflicts[0]["reason"]}
    ]
    assert "wants 仄" in state.conflicts[0]["reason"] and state.chars[-1] == wrong
    state.push("，")  # punctuation is ignored
    assert state.position == (0, 2)


def test_the_first_rhyme_fixes_the_group(gelv, masks, pool):
    pattern = pattern_by_name("五绝·仄起·首句不入韵")
    state = GelvConstraint(masks, pattern)
    group = pool["groups"][0]
    for _ in range(pattern.chars_per_line * 2 - 1):
        state.push(masks.itos[np.flatnonzero(state.allowed())[0]])
    state.push(pool["by_group"][group][0])
    assert state.rhyme_group == group
    while state.position != (3, 4):
        state.push(masks.itos[np.flatnonzero(state.allowed())[0]])
    allowed = [masks.itos[i] for i in np.flatnonzero(state.allowed())]
    assert allowed and all(group in gelv.ping_groups(c) for c in allowed)
    assert pool["by_group"][group][0] not in allowed  # no rhyme twice


def test_a_vocabulary_without_the_group_relaxes_and_says_so(gelv, pool):
    itos = ["<pad>", "<bos>", "<eos>", "<unk>", *pool["single"][PING][:5], *pool["single"][ZE][:5]]
    itos += pool["by_group"][pool["groups"][0]][:1]
    tiny = ToneMasks(itos)
    state = GelvConstraint(tiny, pattern_by_name("五绝·仄起·首句不入韵"), rhyme=pool["groups"][1])
    for _ in range(10):
        assert state.allowed().any()
        state.push(itos[np.flatnonzero(state.allowed())[0]])
    assert any("rhymes in" in c["reason"] for c in state.conflicts)


def test_patterns_for_forced_characters_put_the_fitting_ones_first(pool):
    for tone, start in ((PING, True), (ZE, False)):
        best = patterns_for(7, 4, {(0, 1): pool["single"][tone][0]})
        assert [p.level_start for p in best[:2]] == [start, start]
        assert [p.level_start for p in best[2:]] == [not start, not start]


def test_quality_rates_for_generated_poems(gelv, pool, tang300):
    from core.gelv import rates

    rng = random.Random(9)
    built = ["".join(text(build(p, pool, rng))) for p in ALL_PATTERNS]
    irregular = ["床前明月光，疑是地上霜。"]
    real = tang300.splits["dev"][:20]
    out = rates(built + irregular)
    assert out["gelv_poems"] == 17 and out["gelv_regular"] == round(16 / 17, 4)
    assert out["gelv_passed_regular"] == 1.0 and out["gelv_rhyme_rate"] == 1.0
    assert out["gelv_tone_conformity"] == 1.0
    checked = [gelv.check(p) for p in real if _regular(p)]
    assert rates(real)["gelv_rhyme_rate"] == round(sum(r.rhyme_ok for r in checked) / len(checked), 4)


def _regular(poem):
    try:
        read_regular_lines(poem)
    except GelvError:
        return False
    return True
