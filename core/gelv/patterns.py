"""The standard 平仄 patterns of 近体诗, derived from the rules rather than typed in as tables.

A 五言律句 is fixed by two tones, its 2nd and its last: the 2nd and 4th differ (二四异), and the last
three form a tail with exactly one change of tone (平平仄, 仄仄平, 平仄仄, 仄平平; never 平平平 or
仄平仄). A 七言 line puts two characters of the 4th character's opposite tone (= the 2nd's) in front of
a 五言 line. A poem chains its lines: a couplet's second line has the opposite 2nd tone of its first
(对), the next couplet's first line the same 2nd tone as the line before it (粘); even lines end in 平
(the rhyme), odd lines in 仄, except the first line when it rhymes (首句入韵). The four patterns of a
form come from choosing the first line's 2nd tone (平起 / 仄起) and whether it rhymes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

PING, ZE = "平", "仄"
FORMS = {(5, 4): "五绝", (7, 4): "七绝", (5, 8): "五律", (7, 8): "七律"}


def opposite(tone: str) -> str:
    return ZE if tone == PING else PING


def five_char_line(second: str, last: str) -> str:
    """The 五言律句 with this 2nd and last tone: e.g. (仄, 仄) -> 仄仄平平仄."""
    fourth = opposite(second)
    third = fourth if last != fourth else opposite(fourth)  # exactly one change in the tail
    return second + second + third + fourth + last


def line_pattern(chars: int, second: str, last: str) -> str:
    """A 五言 or 七言 line; `second` is the tone of the line's own 2nd character."""
    if chars == 5:
        return five_char_line(second, last)
    if chars == 7:
        return second + second + five_char_line(opposite(second), last)
    raise ValueError(f"lines of {chars} characters are not a 近体 form (5 or 7)")


def poem_pattern(chars: int, lines: int, level_start: bool, first_rhymed: bool) -> tuple[str, ...]:
    """The lines of one pattern: 对 inside a couplet, 粘 between couplets."""
    second = PING if level_start else ZE
    out = []
    for i in range(lines):
        if i > 0:
            second = opposite(second) if i % 2 == 1 else second  # line i+1 even: 对; odd: 粘
        last = PING if (i % 2 == 1 or (i == 0 and first_rhymed)) else ZE
        out.append(line_pattern(chars, second, last))
    return tuple(out)


@dataclass(frozen=True)
class Pattern:
    """One standard pattern. Positions are 0-based (line, column) everywhere in the API."""

    chars_per_line: int
    n_lines: int
    level_start: bool  # 平起: the first line's 2nd character is 平
    first_rhymed: bool  # 首句入韵

    @cached_property
    def lines(self) -> tuple[str, ...]:
        return poem_pattern(self.chars_per_line, self.n_lines, self.level_start, self.first_rhymed)

    @property
    def form(self) -> str:
        return FORMS[(self.chars_per_line, self.n_lines)]

    @property
    def name(self) -> str:
        start = "平起" if self.level_start else "仄起"
        rhymed = "首句入韵" if self.first_rhymed else "首句不入韵"
        return f"{self.form}·{start}·{rhymed}"

    @property
    def rhyme_lines(self) -> tuple[int, ...]:
        """Lines whose last character rhymes: the even lines, and the first when 首句入韵."""
        return tuple(i for i in range(self.n_lines) if i % 2 == 1 or (i == 0 and self.first_rhymed))

    def tone(self, line: int, col: int) -> str:
        return self.lines[line][col]

    def is_free(self, line: int, col: int) -> bool:
        """一三五不论: the 1st, 3rd (and 5th in 七言) characters may take either tone (the last never)."""
        return col % 2 == 0 and col != self.chars_per_line - 1

    def guards(self, line: int, col: int) -> str | None:
        """The fault that freedom at this position could create, if any: '孤平' or '三平尾'.

        In a line ending ...平平仄仄平 a 仄 at the five-character part's 1st place leaves a lone 平
        (孤平); in a line ending ...仄仄仄平平 a 平 at its 3rd place makes 三平尾.
        """
        if not self.is_free(line, col):
            return None
        tail = self.lines[line][-5:]
        offset = col - (self.chars_per_line - 5)
        if tail == "平平仄仄平" and offset == 0:
            return "孤平"
        if tail == "仄仄仄平平" and offset == 2:
            return "三平尾"
        return None

    def required_tone(self, line: int, col: int) -> str | None:
        """The tone constrained sampling demands here (None: either). Guarded free positions keep
        their pattern tone, so a poem sampled this way can have neither 孤平 nor 三平尾."""
        if self.is_free(line, col) and self.guards(line, col) is None:
            return None
        return self.tone(line, col)

    def notation(self) -> list[str]:
        """The pattern as usually printed, ⊙ where either tone is allowed (可平可仄)."""
        return [
            "".join(
                "⊙" if self.required_tone(i, j) is None else self.tone(i, j)
                for j in range(self.chars_per_line)
            )
            for i in range(self.n_lines)
        ]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "form": self.form,
            "start": "平起" if self.level_start else "仄起",
            "first_rhymed": self.first_rhymed,
            "lines": list(self.lines),
            "notation": self.notation(),
            "rhyme_lines": [i + 1 for i in self.rhyme_lines],
        }


def patterns(chars_per_line: int, n_lines: int) -> list[Pattern]:
    """The four standard patterns of a form: 平起/仄起 x 首句入韵 or not."""
    if (chars_per_line, n_lines) not in FORMS:
        raise ValueError(f"no 近体 form has {n_lines} lines of {chars_per_line} characters")
    return [
        Pattern(chars_per_line, n_lines, level_start, first_rhymed)
        for level_start in (True, False)
        for first_rhymed in (True, False)
    ]


def pattern_by_name(name: str) -> Pattern:
    """`五律·仄起·首句不入韵` (or its parts in any order, e.g. `七绝 平起 入韵`) -> the Pattern."""
    parts = name.replace("·", " ").split()
    form = next((p for p in parts if p in FORMS.values()), None)
    start = next((p for p in parts if p in ("平起", "仄起")), None)
    rhyme = next((p for p in parts if "入韵" in p), None)
    if form is None or start is None:
        raise ValueError(f"{name!r}: name a form (五绝 七绝 五律 七律) and 平起 or 仄起")
    chars, lines = next(k for k, v in FORMS.items() if v == form)
    first_rhymed = (rhyme is None and chars == 7) or (rhyme is not None and "不" not in rhyme)
    return Pattern(chars, lines, start == "平起", first_rhymed)
