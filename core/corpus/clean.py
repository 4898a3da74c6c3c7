"""From a raw chinese-poetry poem to the text the model sees, and why a poem is dropped.

A poem's text is its lines with their own full-width punctuation and nothing else:
`白日依山尽，黄河入海流。欲穷千里目，更上一层楼。` The steps, in order:

1. Editorial notes go: anything inside ( ) （ ） 〖 〗, nested or not, e.g. `(明年 一作：年年)`. The two kinds
   of round bracket are matched with each other (the data mixes them); notes may span paragraphs, so
   this runs on the joined text, and a bracket never closed cuts the rest (all such notes in 全唐诗 are
   trailing citations). Square brackets are the editors' footnote markers (`[一]`, removed) or
   characters they restored (`[墓]`, kept without the brackets).
2. `normalize_text`: whitespace removed, half-width punctuation made full width (，。？！；：、), quotation
   and title marks removed but their content kept (《霓裳》 -> 霓裳; 「」『』“”‘’〈〉), then OpenCC t2s
   unless the script is "traditional". The same function normalises a user's seed at generation time.
3. A run of punctuation marks keeps its first (`。。` left by a note -> `。`); leading marks go; a poem
   whose last character is not punctuation gets `。`.
4. What is left must be Chinese characters and ，。？！；：、. Otherwise the poem is dropped, and the
   first matching reason of DROP_REASONS is counted (see there).
"""

from __future__ import annotations

import functools
import re

from core.corpus.lines import LINE_ENDS, split_lines

# Why a poem is dropped, in the order they are checked.
DROP_REASONS = {
    "empty": "nothing left once the editorial notes are removed",
    "placeholder": "lost or illegible characters written □ ■ ● ○ … in the source",
    "composed_character": "a character Unicode lacks, spelt as {亻|口/工}, ⿰亻丸 or a bare radical",
    "private_use": "a private-use code point (a font-specific glyph)",
    "latin_or_digit": "Latin letters or digits",
    "other_symbol": "any other symbol",
    "irregular_form": "not a regular poem (lines all of 5 or all of 7 characters, 4 or 8 lines)",
    "duplicate": "the same text as an earlier poem",
    "tang300_dev_overlap": "a whole text or a line of 5+ characters shared with a tang300 dev poem",
}

PUNCTUATION = "，。？！；：、"
# Half-width and small-form marks -> the full-width marks the corpus uses.
_HALF_TO_FULL = str.maketrans(",.?!;:．｡､﹐﹑﹒﹖﹗﹔﹕", "，。？！；：。。、，、。？！；：")
_QUOTES_AND_TITLES = "《》〈〉「」『』“”‘’\"'"
_NOTE_OPEN, _NOTE_CLOSE = "(（〖", ")）〗"
_FOOTNOTE_MARK = re.compile(r"[\[［][一二三四五六七八九十〇]+[\]］]")
_RESTORED = re.compile(r"[\[［]([^\[\]［］]*)[\]］]")
_WHITESPACE = re.compile(r"\s+")
_PUNCT_RUN = re.compile(f"([{PUNCTUATION}])[{PUNCTUATION}]+")

_PLACEHOLDERS = set("□■●○◯◻◼▢…⋯")
_COMPOSITION = set("{}|/=+")


def is_hanzi(ch: str) -> bool:
    """A CJK unified or compatibility ideograph (every extension block), or 〇."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x323AF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
        or cp == 0x3007
    )


@functools.cache
def _t2s():
    """One shared converter: OpenCC loads its dictionaries when the object is made."""
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(texts: list[str]) -> list[str]:
    """t2s over many texts in one call (much faster than one call each); texts must not contain newlines."""
    if not texts:
        return []
    out = _t2s().convert("\n".join(texts)).split("\n")
    assert len(out) == len(texts), "t2s changed the number of lines"
    return out


def normalize_text(text: str, script: str = "simplified") -> str:
    """Whitespace out, punctuation full width, quotation/title marks out, t2s unless script="traditional"."""
    text = _WHITESPACE.sub("", text).translate(_HALF_TO_FULL)
    text = text.translate({ord(c): None for c in _QUOTES_AND_TITLES})
    if script == "simplified":
        text = _t2s().convert(text)
    elif script != "traditional":
        raise ValueError(f"script must be 'simplified' or 'traditional', not {script!r}")
    return text


def strip_notes(text: str) -> str:
    """Remove bracketed editorial notes (nested; an unclosed bracket cuts to the end) and footnote marks."""
    kept, depth = [], 0
    for ch in text:
        if ch in _NOTE_OPEN:
            depth += 1
        elif ch in _NOTE_CLOSE:
            depth = max(depth - 1, 0)  # a stray closing bracket is dropped
        elif depth == 0:
            kept.append(ch)
    text = _FOOTNOTE_MARK.sub("", "".join(kept))
    return _RESTORED.sub(r"\1", text)


def tidy_punctuation(text: str) -> str:
    """One mark per break, none leading, and a final mark when the source has none."""
    text = _PUNCT_RUN.sub(r"\1", text).lstrip(PUNCTUATION)
    if text and text[-1] not in PUNCTUATION:
        text += "。"
    return text


def clean_source_text(paragraphs: list[str]) -> str:
    """Steps 1-3 before t2s (done for the whole corpus at once): the text whose characters are checked."""
    text = strip_notes("".join(paragraphs))
    return tidy_punctuation(normalize_text(text, script="traditional"))


def drop_reason(text: str) -> str | None:
    """The DROP_REASONS key that disqualifies a cleaned text, or None when every character is fine."""
    if not text.strip(PUNCTUATION):
        return "empty"
    odd = {ch for ch in text if ch not in PUNCTUATION and not is_hanzi(ch)}
    if not odd:
        return None
    if odd & _PLACEHOLDERS:
        return "placeholder"
    if odd & _COMPOSITION or any(0x2E80 <= ord(c) <= 0x2FFF for c in odd):
        return "composed_character"
    if any(0xE000 <= ord(c) <= 0xF8FF or ord(c) >= 0xF0000 for c in odd):
        return "private_use"
    if any(c.isalnum() for c in odd):
        return "latin_or_digit"
    return "other_symbol"


def is_regular(text: str) -> bool:
    """4 or 8 lines, all of 5 or all of 7 Chinese characters (jueju and lüshi), each ended by a mark."""
    if not text or text[-1] not in LINE_ENDS:
        return False
    lines = split_lines(text)
    if len(lines) not in (4, 8):
        return False
    width = len(lines[0])
    return width in (5, 7) and all(len(line) == width and all(map(is_hanzi, line)) for line in lines)
