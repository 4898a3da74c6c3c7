"""The tone table: rebuilt from the real sources it must equal the committed file; its properties."""

from __future__ import annotations

import json

import opencc
import pytest

from core.corpus.fetch import package_dir
from core.gelv import Gelv
from core.gelv.data import TABLE_PATH, read_pingshui
from core.gelv.report import coverage


@pytest.fixture(scope="module")
def gelv():
    return Gelv.load()


def test_rebuilding_from_the_sources_gives_the_committed_table(cli, tmp_path):
    out = tmp_path / "tones.json"
    figures = cli("gelv", "build-data", "--source", package_dir(), "--out", out, "--json").json()
    assert figures["keys"] == len(json.loads(TABLE_PATH.read_text(encoding="utf-8"))["chars"])
    assert out.read_text(encoding="utf-8") == TABLE_PATH.read_text(encoding="utf-8")


def test_the_sources_agree(gelv):
    strains = gelv.table.meta["stats"]["strains"]
    assert strains["occurrences_compared"] > 2_000_000
    assert strains["agreement_per_occurrence"] > 0.99


def test_groups_come_from_pingshui_with_their_heading_characters(gelv):
    names = gelv.table.group_names
    assert len(names) == 106 and len(gelv.table.ping_group_names) == 30
    assert all("平" in n for n in names[:30]) and not any("平" in n for n in names[30:])
    for short in gelv.table.ping_group_names:
        assert short in gelv.ping_groups(short), f"{short} must belong to its own group"


def test_simplified_keys_keep_every_reading_of_their_traditional_forms(gelv):
    """干 merges 乾 幹 干; 后 merges 後 后: a Simplified key holds the union of their readings."""
    names, members = read_pingshui()
    t2s = opencc.OpenCC("t2s")
    ping = len(gelv.table.ping_group_names)
    merged = 0
    for trad, groups in members.items():
        simp = t2s.convert(trad)
        tones = {"平" if g < ping else "仄" for g in groups}
        short = {names[g][-1] for g in groups}
        for key in {trad, simp}:
            assert tones <= gelv.tones(key), (trad, key)
            assert {t2s.convert(s) for s in short} <= gelv.rhyme_groups(key), (trad, key)
        merged += simp != trad and gelv.tones(simp) != tones
    assert merged > 0, "some Simplified characters merge readings"


def test_every_key_is_one_chinese_character(gelv):
    from core.corpus.clean import is_hanzi

    assert all(len(k) == 1 and is_hanzi(k) for k in gelv.table.tones)
    assert all(gelv.table.tones[k] for k in gelv.table.tones)


def test_vocabulary_coverage():
    figures = coverage(("tang300",))["corpora"]["tang300"]
    assert figures["tone_known"]["characters"] > 0.98
    assert figures["tone_known"]["tokens"] > 0.995
    assert figures["ping_with_rhyme_group"] > 0.98
