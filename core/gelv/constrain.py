"""Masks over a vocabulary for 格律-constrained sampling (torch-free; the sampler turns them into -inf).

    masks = ToneMasks(vocab.itos)                     # once per vocabulary
    pattern = patterns(5, 4)[0]                       # or pattern_by_name("五绝·仄起·首句不入韵")
    state = GelvConstraint(masks, pattern, rhyme="尤")   # rhyme=None: the first rhyme fixes the group
    while not state.done:
        allowed = state.allowed()                     # np.ndarray[bool] over vocabulary ids
        ch = ...sample among allowed ids...           # or a forced acrostic/seed character
        state.push(ch, forced=False)                  # punctuation may be pushed too: it is ignored
    state.conflicts                                   # forced characters that did not fit

Rules. A position whose pattern tone is free (一三五不论, and not guarding against 孤平 / 三平尾) allows
every Chinese character, including those we have no tone for. Elsewhere a character must have the
pattern's tone among its readings (one with both tones fits either); characters of unknown tone are
not allowed there. A rhyme position also needs a 平 group: any, at the first rhyme (unless `rhyme`
was given), then one shared with the rhymes so far. A poem sampled this way passes the checker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.gelv.checker import Gelv
from core.gelv.patterns import PING, ZE, Pattern, patterns


class ToneMasks:
    """Boolean masks over vocabulary ids: by tone, by 平 rhyme group. Masks returned are read-only."""

    def __init__(self, itos: Sequence[str], gelv: Gelv | None = None):
        from core.corpus.clean import is_hanzi

        self.gelv = gelv or Gelv.load()
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        size = len(self.itos)
        self.hanzi = np.array([len(s) == 1 and is_hanzi(s) for s in self.itos], dtype=bool)
        self.ping = np.array([PING in self.gelv.tones(s) for s in self.itos], dtype=bool) & self.hanzi
        self.ze = np.array([ZE in self.gelv.tones(s) for s in self.itos], dtype=bool) & self.hanzi
        self.groups: dict[str, np.ndarray] = {
            g: np.zeros(size, dtype=bool) for g in self.gelv.table.ping_group_names
        }
        for i, s in enumerate(self.itos):
            if self.hanzi[i]:
                for g in self.gelv.ping_groups(s):
                    self.groups[g][i] = True
        self.rhymable = (
            np.logical_or.reduce(list(self.groups.values())) if self.groups else np.zeros(size, bool)
        )
        for mask in (self.hanzi, self.ping, self.ze, self.rhymable, *self.groups.values()):
            mask.flags.writeable = False

    def tone_allowed(self, tone: str | None) -> np.ndarray:
        """平 or 仄: characters having that reading; None: every Chinese character."""
        return {PING: self.ping, ZE: self.ze, None: self.hanzi}[tone]

    def allowed(self, pattern: Pattern, line: int, col: int) -> np.ndarray:
        """Tone fit at (line, col), 0-based; at a rhyme position also a 平 group (any one)."""
        mask = self.tone_allowed(pattern.required_tone(line, col))
        if is_rhyme_position(pattern, line, col):
            mask = mask & self.rhymable
        return mask

    def rhyme_allowed(self, group: str | Sequence[str]) -> np.ndarray:
        """Characters in a 平 group (short or full name: 东, 一东, 上平声一东), or in any of several."""
        names = [group] if isinstance(group, str) else list(group)
        out = np.zeros(len(self.itos), dtype=bool)
        for name in names:
            out |= self.groups[self.gelv.resolve_group(name)]
        return out


def is_rhyme_position(pattern: Pattern, line: int, col: int) -> bool:
    return col == pattern.chars_per_line - 1 and line in pattern.rhyme_lines


class GelvConstraint:
    """Where a poem being sampled stands against its pattern, and what may come next."""

    def __init__(
        self, masks: ToneMasks, pattern: Pattern, rhyme: str | None = None, *, distinct_rhymes: bool = True
    ):
        self.masks = masks
        self.pattern = pattern
        self.groups: frozenset[str] | None = frozenset([masks.gelv.resolve_group(rhyme)]) if rhyme else None
        self.distinct_rhymes = distinct_rhymes  # no character rhymes twice (重韵)
        self.chars: list[str] = []
        self.rhymes_used: set[str] = set()
        self.conflicts: list[dict] = []

    @property
    def position(self) -> tuple[int, int]:
        """(line, col) of the next character, 0-based."""
        return divmod(len(self.chars), self.pattern.chars_per_line)

    @property
    def done(self) -> bool:
        return len(self.chars) >= self.pattern.chars_per_line * self.pattern.n_lines

    @property
    def at_line_end(self) -> bool:
        """True right after a line's last character: the sampler's turn to put punctuation."""
        return bool(self.chars) and len(self.chars) % self.pattern.chars_per_line == 0

    @property
    def rhyme_group(self) -> str | None:
        """The group fixed so far (the first in table order when the rhymes still allow several)."""
        if not self.groups:
            return None
        order = self.masks.gelv.table.ping_group_names
        return min(self.groups, key=order.index)

    def allowed(self) -> np.ndarray:
        """The vocabulary ids that may come next. Never all False: when nothing in the vocabulary fits,
        the rhyme group, then the tone, is dropped for this position (recorded in `conflicts`)."""
        if self.done:
            raise ValueError("the poem is complete")
        line, col = self.position
        tone_mask = self.masks.allowed(self.pattern, line, col)
        if not is_rhyme_position(self.pattern, line, col):
            return self._or_relax(tone_mask, line, col)
        mask = tone_mask & self.masks.rhyme_allowed(sorted(self.groups)) if self.groups else tone_mask
        if self.distinct_rhymes and self.rhymes_used:
            mask = mask.copy()
            mask[[self.masks.stoi[c] for c in self.rhymes_used if c in self.masks.stoi]] = False
        if mask.any():
            return mask
        self.conflicts.append(
            {
                "line": line + 1,
                "position": col + 1,
                "char": None,
                "reason": f"no character of the vocabulary rhymes in {self.rhyme_group}",
            }
        )
        return self._or_relax(tone_mask, line, col)

    def _or_relax(self, mask: np.ndarray, line: int, col: int) -> np.ndarray:
        if mask.any():
            return mask
        self.conflicts.append(
            {
                "line": line + 1,
                "position": col + 1,
                "char": None,
                "reason": "no character of the vocabulary has the pattern's tone",
            }
        )
        return self.masks.hanzi

    def fits(self, ch: str) -> bool:
        """Would `ch` be allowed next?"""
        line, col = self.position
        required = self.pattern.required_tone(line, col)
        tones = self.masks.gelv.tones(ch)
        if required is not None and required not in tones:
            return False
        if is_rhyme_position(self.pattern, line, col):
            groups = self.masks.gelv.ping_groups(ch)
            if not groups or (self.groups is not None and not groups & self.groups):
                return False
            if self.distinct_rhymes and ch in self.rhymes_used:
                return False
        return True

    def push(self, ch: str, *, forced: bool = False) -> None:
        """Record the next character; punctuation and other non-characters are ignored. A character
        that does not fit (a forced acrostic or seed character, or one sampled after `allowed` had to
        relax) is kept and reported in `conflicts`."""
        from core.corpus.clean import is_hanzi

        if len(ch) != 1 or not is_hanzi(ch):
            return
        if self.done:
            raise ValueError("the poem is complete")
        line, col = self.position
        if not self.fits(ch):
            self.conflicts.append(
                {
                    "line": line + 1,
                    "position": col + 1,
                    "char": ch,
                    "forced": forced,
                    "reason": self._why_not(ch),
                }
            )
        if is_rhyme_position(self.pattern, line, col):
            self.rhymes_used.add(ch)
            groups = self.masks.gelv.ping_groups(ch)
            narrowed = groups if self.groups is None else groups & self.groups
            if narrowed:  # a forced character that cannot rhyme leaves the group as it was
                self.groups = frozenset(narrowed)
        self.chars.append(ch)

    def _why_not(self, ch: str) -> str:
        line, col = self.position
        required = self.pattern.required_tone(line, col)
        tones = self.masks.gelv.tones(ch)
        if required is not None and required not in tones:
            has = "".join(sorted(tones)) or "no tone data"
            return f"the pattern {self.pattern.name} wants {required} here, {ch} is {has}"
        if self.distinct_rhymes and ch in self.rhymes_used:
            return f"{ch} already rhymes in this poem"
        groups = self.masks.gelv.ping_groups(ch)
        if not groups:
            return f"{ch} has no 平 rhyme group"
        return f"{ch} ({''.join(sorted(groups))}) does not rhyme in {self.rhyme_group}"


def patterns_for(
    chars_per_line: int, n_lines: int, forced: dict[tuple[int, int], str], gelv: Gelv | None = None
):
    """The form's patterns that fit the forced characters (acrostic, seed) best, fewest conflicts first.

    `forced` maps (line, col), 0-based, to a character. Patterns tied on conflicts keep the order of
    `patterns()`; a sampler may pick among the first ones at random.
    """
    gelv = gelv or Gelv.load()

    def conflicts(pattern: Pattern) -> int:
        return sum(
            1
            for (line, col), ch in forced.items()
            if (tone := pattern.required_tone(line, col)) is not None and tone not in gelv.tones(ch)
        )

    return sorted(patterns(chars_per_line, n_lines), key=conflicts)
