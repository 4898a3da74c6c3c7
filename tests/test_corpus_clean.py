"""Cleaning rules, on strings taken from the chinese-poetry data itself."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.corpus.clean import (
    DROP_REASONS,
    clean_source_text,
    drop_reason,
    is_regular,
    normalize_text,
    strip_notes,
    to_simplified,
)
from core.corpus.lines import split_lines


def test_t2s_is_applied_and_traditional_keeps_the_source():
    assert normalize_text("長安一片月") == "长安一片月"
    assert normalize_text("長安一片月", script="traditional") == "長安一片月"
    with pytest.raises(ValueError):
        normalize_text("月", script="klingon")


def test_normalize_makes_punctuation_full_width_and_drops_spaces_and_marks():
    assert normalize_text(" 春眠不覺曉, 處處聞啼鳥. ") == "春眠不觉晓，处处闻啼鸟。"
    assert normalize_text("君不見?行路難!多歧路;今安在:") == "君不见？行路难！多歧路；今安在："
    assert normalize_text("初爲《霓裳》後「六幺」") == "初为霓裳后六幺"
    assert normalize_text("山\u3000水\t") == "山水"


@pytest.mark.parametrize(
    ("paragraphs", "expected"),
    [
        # tang300 山中送別: a half-width note at the end
        (
            ["山中相送罷，日暮掩柴扉。", "春草明年綠，王孫歸不歸？(明年 一作：年年)"],
            "山中相送罷，日暮掩柴扉。春草明年綠，王孫歸不歸？",
        ),
        # tang300 八陣圖: a full-width note in the middle
        (
            ["功蓋三分國，名成八陣圖。（名成 一作：名高）", "江流石不轉，遺恨失吞吳。"],
            "功蓋三分國，名成八陣圖。江流石不轉，遺恨失吞吳。",
        ),
        # tang300 夜上受降城聞笛: a note opened half-width and closed full-width
        (
            ["回樂烽前沙似雪，受降城外月如霜。(回樂一作：回樂）", "不知何處吹蘆管，一夜徵人盡望鄉。"],
            "回樂烽前沙似雪，受降城外月如霜。不知何處吹蘆管，一夜徵人盡望鄉。",
        ),
        # quantangshi: nested notes, 〖〗 footnotes, and the 。 a note leaves behind
        (
            ["雲壑凝寒陰，巖泉激幽響。", "（見《吟窗雜錄》（〖1〗殷璠曰：「至如『雲壑凝寒陰』」）。）。"],
            "雲壑凝寒陰，巖泉激幽響。",
        ),
        # a note that spans paragraphs, and one that is never closed
        (["春來發幾枝。（按：此詩", "又見某書。）願君多采擷。"], "春來發幾枝。願君多采擷。"),
        (
            ["寂寂金庭洞，清香發桂枝。", "（《永樂大典》一三○七四「洞」字韻（此詩未全。）。"],
            "寂寂金庭洞，清香發桂枝。",
        ),
        # editors' footnote marks go, restored characters stay
        (["長安落葉酒[二]，寒風吹[墓]田。"], "長安落葉酒，寒風吹墓田。"),
        # no final mark in the source
        (["白日依山盡，黃河入海流"], "白日依山盡，黃河入海流。"),
    ],
)
def test_clean_source_text(paragraphs, expected):
    assert clean_source_text(paragraphs) == expected
    assert drop_reason(expected) is None


@pytest.mark.parametrize(
    ("paragraphs", "reason"),
    [
        (["。"], "empty"),
        (["（按：此詩已佚。）"], "empty"),
        (["避亂無深淺，蒼黃古驛東。草枯牛尚齕，霞濕燒微紅。□□時時□，人愁處處同。"], "placeholder"),
        (["剪翅小鷹斜，縚根玉鏇花。●●啼深竹，鵁鶄老溼沙。"], "placeholder"),
        (["粥飯不能{歹肖}，空肚作聲響。"], "composed_character"),
        (["孟子終焉處，遊人得得過。⿰木養深黃狖小，地煗白雲多。"], "composed_character"),
        (["素練風霜起，蒼鷹畫作殊。\ue829身思狡兔，俱目似愁胡。"], "private_use"),
        (["Ｂ亂後碧井廢，時清瑤殿深。"], "latin_or_digit"),
        (["一瓶寒水背書囊。-。"], "other_symbol"),
    ],
)
def test_drop_reasons(paragraphs, reason):
    assert reason in DROP_REASONS
    assert drop_reason(clean_source_text(paragraphs)) == reason


def test_strip_notes_drops_a_stray_closing_bracket():
    assert strip_notes("月落烏啼霜滿天）江楓漁火對愁眠") == "月落烏啼霜滿天江楓漁火對愁眠"


def test_regular_forms():
    assert is_regular("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    assert is_regular("渭城朝雨浥轻尘，客舍青青柳色新。劝君更尽一杯酒，西出阳关无故人。")
    assert is_regular("空山不见人，但闻人语响。返景入深林，复照青苔上。" * 2)
    assert not is_regular("白日依山尽，黄河入海流。")  # two lines
    assert not is_regular("白日依山尽，黄河入海流。欲穷千里目，更上一层楼高。")  # 5 and 6
    assert not is_regular("白日依山尽，黄河入海流。欲穷千里目，更上一层楼")  # no final mark
    assert not is_regular("白日依山尽，黄河：入海流。欲穷千里目，更上一层楼。")  # a colon inside a line
    assert not is_regular("空山不见人，但闻人语响。返景入深林，复照青苔上。" * 3)  # 12 lines
    assert split_lines("床前明月光，疑是地上霜？") == ["床前明月光", "疑是地上霜"]


def test_t2s_in_one_call_equals_one_call_per_poem():
    from core.corpus.sources import corpus_files, parse_package_files, read_package_files

    raw = parse_package_files(read_package_files(corpus_files("tang300")))
    texts = [clean_source_text(p) for p in raw]
    assert to_simplified(texts) == [normalize_text(t) for t in texts]


_TEXT = st.text(alphabet=st.sampled_from("山水長風，。,.?!;: \t「」《》長風月乾徵a1"), max_size=40)


@given(_TEXT)
def test_normalize_text_is_idempotent_and_leaves_no_half_width_marks(text):
    once = normalize_text(text, script="traditional")
    assert normalize_text(once, script="traditional") == once
    assert not set(once) & set(",.?!;: \t「」《》")
