"""The 格律 checker: a poem against the four standard patterns of its form, and its rhyme.

A character conforms where its tones include the pattern's (a character with both tones fits either);
the 1st, 3rd (and 5th) characters of a line are free (一三五不论) unless their freedom makes 孤平 (a
平收 line whose last five characters read 仄平仄仄平) or 三平尾 (a line ending 平平平); a line due to
end 平平平仄仄 may take the 特拗 form 平平仄平仄 instead (its 1st 平 then fixed). The rhyme characters
(even lines' last, and the first line's when it rhymes) must share one 平水韵 平 group;
with several readings, any may match. The best-matching pattern is the one with the fewest faults.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.gelv.data import TABLE_PATH, GelvError, Table, load_table
from core.gelv.patterns import FORMS, PING, ZE, Pattern, patterns

BOTH, UNKNOWN = "中", "？"  # a character that reads either tone; one we have no tone for
MARKS = {PING: "○", ZE: "●", BOTH: "◐", UNKNOWN: "？"}
SHAPES = {n * k: (n, k) for (n, k) in FORMS}  # total characters -> (characters a line, lines)
# 特拗: a line whose last five should read 平平平仄仄 may read 平平仄平仄 (its first 平 then fixed),
# a form so common in Tang 律诗 (海内存知己 ... 无为在歧路) that it counts as regular.
TE_AO_FROM, TE_AO = "平平平仄仄", "平平仄平仄"


# ---------------------------------------------------------------- reading a poem


def read_regular_lines(text: str) -> list[str]:
    """The lines of a regular-form poem, Simplified, from text with or without punctuation, newlines or
    spaces, in Simplified or Traditional characters. GelvError (one line, says why) otherwise."""
    from core.corpus.clean import is_hanzi, normalize_text, strip_notes

    text = strip_notes(text)
    segments, current = [], []
    for ch in text + "\n":
        if is_hanzi(ch) and ch != "〇":
            current.append(ch)
        elif current:
            segments.append("".join(current))
            current = []
    if not segments:
        raise GelvError("not a poem: no Chinese characters")
    segments = normalize_text("，".join(segments)).split("，")
    lengths = [len(s) for s in segments]
    if len(segments) in (4, 8) and len(set(lengths)) == 1 and lengths[0] in (5, 7):
        return segments
    total = sum(lengths)
    if total in SHAPES:  # unpunctuated, or broken at couplets: cut at the line length the total implies
        n, _ = SHAPES[total]
        if all(length % n == 0 for length in lengths):
            joined = "".join(segments)
            return [joined[i : i + n] for i in range(0, total, n)]
    shown = ", ".join(map(str, lengths[:10])) + (", ..." if len(lengths) > 10 else "")
    raise GelvError(
        f"not a regular-form poem: {len(segments)} lines of {shown} characters "
        "(a 绝句 or 律诗 has 4 or 8 lines of 5 or 7 characters)"
    )


def join_lines(lines: list[str]) -> str:
    return "".join(line + ("，" if i % 2 == 0 else "。") for i, line in enumerate(lines))


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Fault:
    kind: str  # tone | unknown_tone | 孤平 | 三平尾 | rhyme | unknown_rhyme
    line: int  # 0-based in Python, 1-based in JSON
    col: int
    char: str
    message: str

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "line": self.line + 1,
            "position": self.col + 1,
            "char": self.char,
            "message": self.message,
        }


@dataclass
class LineResult:
    text: str
    pattern: str  # the pattern's tones for this line
    readings: str  # each character's tones in our data: 平 仄 中 (both) ？ (unknown)
    tones: str  # the reading used: a 中 character takes the pattern's tone; ？ stays
    conform: list[bool]
    rhymes: bool  # its last character is a rhyme position
    variant: str | None = None  # "特拗" when the line takes that accepted form of its pattern

    @property
    def marks(self) -> str:
        """○ 平 ● 仄 (？ unknown) under each character, as the TUI shows them."""
        return "".join(MARKS[t] for t in self.tones)

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "pattern": self.pattern,
            "readings": self.readings,
            "tones": self.tones,
            "marks": self.marks,
            "conform": self.conform,
            "rhymes": self.rhymes,
            "variant": self.variant,
        }


@dataclass
class GelvResult:
    text: str
    pattern: Pattern
    lines: list[LineResult]
    rhyme_ok: bool
    rhyme_group: str | None  # the shared 平 group (short name, e.g. 尤), or the most shared one
    rhyme_group_name: str | None  # its full name, e.g. 下平声十一尤
    faults: list[Fault] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.faults

    @property
    def form(self) -> str:
        return self.pattern.form

    @property
    def tones(self) -> list[str]:
        return [line.tones for line in self.lines]

    @property
    def conformity(self) -> float:
        """Share of characters whose tone the pattern allows there (with 一三五不论)."""
        flags = [c for line in self.lines for c in line.conform]
        return sum(flags) / len(flags)

    @property
    def strict_conformity(self) -> float:
        """Share of characters that fit the pattern's own tone, with no freedom at all."""
        fits = [
            p in _tone_set(r) for line in self.lines for p, r in zip(line.pattern, line.readings, strict=True)
        ]
        return sum(fits) / len(fits)

    @property
    def rhyme_positions(self) -> list[tuple[int, int]]:
        return [(i, self.pattern.chars_per_line - 1) for i in self.pattern.rhyme_lines]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "text": self.text,
            "form": self.form,
            "pattern": self.pattern.name,
            "pattern_lines": list(self.pattern.lines),
            "pattern_notation": self.pattern.notation(),
            "tones": self.tones,
            "rhyme_ok": self.rhyme_ok,
            "rhyme_group": self.rhyme_group,
            "rhyme_group_name": self.rhyme_group_name,
            "rhyme_positions": [[i + 1, j + 1] for i, j in self.rhyme_positions],
            "rhyme_chars": "".join(self.lines[i].text[j] for i, j in self.rhyme_positions),
            "conformity": round(self.conformity, 4),
            "strict_conformity": round(self.strict_conformity, 4),
            "faults": [f.to_json() for f in self.faults],
            "lines": [line.to_json() for line in self.lines],
        }


_TONE_SETS = {PING: frozenset(PING), ZE: frozenset(ZE), BOTH: frozenset(PING + ZE)}


def _tone_set(reading: str) -> frozenset[str]:
    return _TONE_SETS.get(reading, frozenset())


# ---------------------------------------------------------------- the checker


class Gelv:
    """Tones, rhyme groups and the checker over one tone table (core/gelv/tones.json)."""

    def __init__(self, table: Table):
        self.table = table
        self._short_of = {}
        for full in table.group_names:
            for alias in (full, full[-1], full.split("声")[-1]):  # 上平声一东, 东, 一东
                self._short_of[alias] = full[-1]

    @classmethod
    def load(cls, path: Path | str | None = None) -> Gelv:
        """The shared instance (the table is read once per process)."""
        return _load(Path(path) if path else TABLE_PATH)

    # -- characters

    def tones(self, ch: str) -> frozenset[str]:
        """{'平'}, {'仄'}, {'平','仄'} (a character with both), or empty when we have no data."""
        return self.table.tones.get(ch, frozenset())

    def rhyme_groups(self, ch: str) -> frozenset[str]:
        """Every 平水韵 group of the character (平 and 仄), by short name: 东, 董, 送, 屋 ..."""
        return self.table.groups.get(ch, frozenset())

    def ping_groups(self, ch: str) -> frozenset[str]:
        """The character's 平 groups: the ones a 近体诗 rhyme can use."""
        return self.rhyme_groups(ch) & self.ping_group_set

    @functools.cached_property
    def ping_group_set(self) -> frozenset[str]:
        return frozenset(self.table.ping_group_names)

    def reading(self, ch: str) -> str:
        """平, 仄, 中 (either) or ？ (unknown): the character's tones as one mark."""
        tones = self.tones(ch)
        return BOTH if len(tones) == 2 else next(iter(tones), UNKNOWN)

    def readings(self, text: str) -> str:
        return "".join(map(self.reading, text))

    def tone_marks(self, text: str) -> str:
        """○ 平, ● 仄, ◐ either, ？ unknown, for every character of any text (punctuation kept)."""
        from core.corpus.clean import is_hanzi

        return "".join(MARKS[self.reading(ch)] if is_hanzi(ch) else ch for ch in text)

    def resolve_group(self, name: str) -> str:
        """A 平 group's short name from 东, 一东, 上平声一东 or their Traditional forms."""
        from core.corpus.clean import normalize_text

        short = self._short_of.get(normalize_text(name.strip()))
        if short is None or short not in self.ping_group_set:
            raise GelvError(
                f"{name!r} is not a 平水韵 平声 group; use one of {''.join(self.table.ping_group_names)}"
            )
        return short

    def group_name(self, short: str) -> str:
        return next(full for full in self.table.group_names if full[-1] == short)

    # -- poems

    def check(self, poem: str | list[str], pattern: Pattern | None = None) -> GelvResult:
        """Check a poem (text, or its lines) against `pattern`, or against the best-matching one."""
        lines = read_regular_lines(poem) if isinstance(poem, str) else list(poem)
        chars, n_lines = len(lines[0]), len(lines)
        if (chars, n_lines) not in FORMS or any(len(line) != chars for line in lines):
            raise GelvError(
                f"not a regular-form poem: {n_lines} lines of {', '.join(str(len(s)) for s in lines)}"
            )
        if pattern is not None and (pattern.chars_per_line, pattern.n_lines) != (chars, n_lines):
            raise GelvError(f"the poem is not a {pattern.form}: {n_lines} lines of {chars} characters")
        candidates = [pattern] if pattern else patterns(chars, n_lines)
        results = [self._check_against(lines, p) for p in candidates]
        return max(results, key=_goodness)

    def _check_against(self, lines: list[str], pattern: Pattern) -> GelvResult:
        faults: list[Fault] = []
        line_results = []
        for i, text in enumerate(lines):
            result, line_faults = self._check_line(text, i, pattern)
            line_results.append(result)
            faults += line_faults
        rhyme_ok, group, rhyme_faults = self._check_rhyme(lines, pattern)
        faults += rhyme_faults
        return GelvResult(
            text=join_lines(lines),
            pattern=pattern,
            lines=line_results,
            rhyme_ok=rhyme_ok,
            rhyme_group=group,
            rhyme_group_name=self.group_name(group) if group else None,
            faults=sorted(faults, key=lambda f: (f.line, f.col)),
        )

    def _check_line(self, text: str, i: int, pattern: Pattern) -> tuple[LineResult, list[Fault]]:
        """The line against its pattern line, or against the 特拗 form of it when that fits better."""
        want = pattern.lines[i]
        rhymes = i in pattern.rhyme_lines
        standard = self._check_tones(text, i, want, lambda j: pattern.is_free(i, j), rhymes)
        if want[-5:] != TE_AO_FROM or not standard[1]:
            return standard
        n = pattern.chars_per_line
        variant = self._check_tones(
            text, i, want[:-5] + TE_AO, lambda j: pattern.is_free(i, j) and j < n - 5, rhymes
        )
        if variant[1]:
            return standard
        variant[0].variant = "特拗"
        return variant

    def _check_tones(self, text: str, i: int, want: str, is_free, rhymes: bool) -> tuple[LineResult, list]:
        """Each character against `want` (free where `is_free(col)`), then 孤平 and 三平尾."""
        readings = self.readings(text)
        conform, faults = [], []
        for j, (ch, reading) in enumerate(zip(text, readings, strict=True)):
            fits = want[j] in _tone_set(reading)
            conform.append(fits or is_free(j))
            if not conform[j]:
                kind, what = (
                    ("unknown_tone", "no tone data") if reading == UNKNOWN else ("tone", f"is {reading}")
                )
                faults.append(
                    Fault(kind, i, j, ch, f"line {i + 1} char {j + 1} {ch}: {what}, pattern {want[j]}")
                )
        # the tones read: the pattern's where the character allows it (or where we do not know)
        used = "".join(
            want[j] if (r == BOTH or (r == UNKNOWN and is_free(j))) else r for j, r in enumerate(readings)
        )
        effective = "".join(want[j] if t == UNKNOWN else t for j, t in enumerate(used))
        for kind, span in named_faults(effective) if want[-1] == PING else []:
            culprits = [j for j in span if is_free(j) and effective[j] != want[j]]
            for j in culprits:
                conform[j] = False
            at = culprits[0] if culprits else span[0]
            faults.append(Fault(kind, i, at, text[at], f"line {i + 1} {text}: {kind} ({effective})"))
        return LineResult(text, want, readings, used, conform, rhymes), faults

    def _check_rhyme(self, lines: list[str], pattern: Pattern) -> tuple[bool, str | None, list[Fault]]:
        """Do the rhyme characters share a 平 group? The group most of them share is the poem's."""
        positions = [(i, pattern.chars_per_line - 1) for i in pattern.rhyme_lines]
        groups = {(i, j): self.ping_groups(lines[i][j]) for i, j in positions}
        counts = Counter(g for gs in groups.values() for g in gs)
        order = {g: k for k, g in enumerate(self.table.ping_group_names)}
        group = min(counts, key=lambda g: (-counts[g], order[g])) if counts else None
        faults = []
        for (i, j), gs in groups.items():
            ch = lines[i][j]
            if group in gs:
                continue
            if not self.rhyme_groups(ch):
                faults.append(Fault("unknown_rhyme", i, j, ch, f"line {i + 1} {ch}: no rhyme data"))
            else:
                has = "".join(sorted(self.rhyme_groups(ch), key=lambda g: order.get(g, 99))) or "-"
                faults.append(
                    Fault("rhyme", i, j, ch, f"line {i + 1} {ch} ({has}) does not rhyme in {group}")
                )
        return not faults, group, faults


def named_faults(tones: str) -> list[tuple[str, range]]:
    """孤平 and 三平尾 in a 平收 line's tones, each with the span of columns it concerns.

    孤平: in the last five, one 平 besides the rhyme, not next to it (仄平仄仄平; 仄仄仄平平 is fine).
    """
    n, found = len(tones), []
    tail = tones[-5:]
    if tail[:4].count(PING) == 1 and tail[3] != PING:
        found.append(("孤平", range(n - 5, n)))
    if tones[-3:] == PING * 3:
        found.append(("三平尾", range(n - 3, n)))
    return found


def _goodness(result: GelvResult) -> tuple:
    """The best-matching pattern: passes, fits most characters, rhymes, then fits the most strictly."""
    rhyming = sum(1 for f in result.faults if f.kind.endswith("rhyme"))
    return (result.passed, result.conformity, result.rhyme_ok, -rhyming, result.strict_conformity)


@functools.cache
def _load(path: Path) -> Gelv:
    return Gelv(load_table(path))


def check(poem: str | list[str]) -> GelvResult:
    """Check with the shared table: `core.gelv.check("白日依山尽，黄河入海流。...")`."""
    return Gelv.load().check(poem)


def check_all(poems: list[str]) -> list[GelvResult]:
    """The results of the poems in a regular form (the others, which the checker refuses, are left out)."""
    gelv = Gelv.load()
    results = []
    for poem in poems:
        try:
            results.append(gelv.check(poem))
        except GelvError:
            continue
    return results


def quality(poems: list[str]) -> dict:
    """The 格律 figures `core.evaluate --quality` reports for a set of generated poems.

    regular: share in a regular form; passed: share passing the checker (irregular poems fail);
    passed_regular, rhyme_rate, tone_conformity: over the regular ones only.
    """
    results = check_all(poems)
    n, k = len(poems), len(results)

    def share(count: int, of: int) -> float | None:
        return round(count / of, 4) if of else None

    return {
        "gelv_poems": n,
        "gelv_regular": share(k, n),
        "gelv_passed": share(sum(r.passed for r in results), n),
        "gelv_passed_regular": share(sum(r.passed for r in results), k),
        "gelv_rhyme_rate": share(sum(r.rhyme_ok for r in results), k),
        "gelv_tone_conformity": round(sum(r.conformity for r in results) / k, 4) if k else None,
    }
