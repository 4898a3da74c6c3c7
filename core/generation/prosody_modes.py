"""The prosody modes between `none` and `gelv`: rhyme and tones of regular lines, masked or reweighted.

`SampleSettings.prosody` chooses one (core.generate, core.judge and the workbench all read it there):

- `none`: nothing beyond the form (core.generation.form: line lengths, punctuation, the end).
- `rhyme`: the last character of every even line (2nd, 4th, …) is masked to the 平 characters of the 平水韵
  group that the first rhyme sets (narrowed by later rhymes), none of them rhyming twice; the first line's
  last character is a 仄 one, one of either tone, or a 平 one that rhymes, which then sets the group
  (首句入韵). The other characters are the model's.
- `soft-rhyme`: the same characters are favoured rather than imposed: every other character loses
  `weight` nats of log-probability at a rhyme position.
- `soft`: rhyme as in `rhyme`, and elsewhere a character that fits none of the regulated patterns still
  open loses `weight` nats. The patterns are the four of the form (平起/仄起 × 首句入韵 or not, both line
  lengths while an `auto` first line is open); those with the fewest misfits so far stay open, so the
  model's own first characters choose the pattern instead of a draw made before the poem starts (as
  `gelv` does). With a large weight every character fits an open pattern and the poem passes the checker.
- `gelv`: core.gelv.constrain — one pattern drawn first, its tones and one rhyme group masked.

The weight is taken off the logits before temperature and truncation, so with τ 1 and no truncation the
poem is drawn from p(c)·exp(−weight·misfit(c)), renormalised. A `free` form has no prosody (its lines are
not regular). A mask that leaves nothing (a tiny vocabulary, a group used up) is relaxed: first the
no-repeat rule, then the group.
"""

from __future__ import annotations

import torch

from core.gelv.constrain import ToneMasks
from core.gelv.patterns import PING, ZE, Pattern, patterns

SOFT_MODES = ("soft-rhyme", "soft")
VERSE_MODES = ("soft-rhyme", "rhyme", "soft")  # the modes this module implements


class VerseMasks:
    """Boolean tensors over one vocabulary for the verse modes, built once per sampler and cached."""

    def __init__(self, tone_masks: ToneMasks):
        t = tone_masks
        self.gelv = t.gelv
        self.stoi = t.stoi
        self.hanzi = torch.from_numpy(t.hanzi.copy())
        self.rhymable = torch.from_numpy(t.rhymable.copy())
        self._tone = {PING: torch.from_numpy(t.ping.copy()), ZE: torch.from_numpy(t.ze.copy())}
        self._pure_ping = torch.from_numpy((t.ping & ~t.ze).copy())
        self._tm = t
        self._groups: dict[frozenset, torch.Tensor] = {}
        self._first: dict[frozenset | None, torch.Tensor] = {}
        self._fit: dict[tuple, torch.Tensor | None] = {}

    def group_mask(self, groups: frozenset | None) -> torch.Tensor:
        """平 characters of any of `groups` (None: of any 平 group)."""
        if groups is None:
            return self.rhymable
        if groups not in self._groups:
            self._groups[groups] = torch.from_numpy(self._tm.rhyme_allowed(sorted(groups)).copy())
        return self._groups[groups]

    def rhyme(self, groups: frozenset | None, used: list[int]) -> torch.Tensor:
        """Characters that may end an even line: in the group, not rhymed yet (relaxed when none is left)."""
        want = self.group_mask(groups)
        if used:
            fresh = want.clone()
            fresh[used] = False
            if fresh.any():
                return fresh
        if want.any():
            return want
        return self.rhymable if self.rhymable.any() else self.hanzi

    def first_end(self, groups: frozenset | None) -> torch.Tensor:
        """Characters that may end the first line: any but a 平-only one that does not rhyme."""
        if groups not in self._first:
            self._first[groups] = self.hanzi & ~(self._pure_ping & ~self.group_mask(groups))
        return self._first[groups]

    def misfits(self, open_patterns: tuple[Pattern, ...], line: int, col: int) -> torch.Tensor | None:
        """Chinese characters that fit none of the patterns at (line, col); None: every character fits."""
        key = (open_patterns, line, col)
        if key not in self._fit:
            tones = {p.required_tone(line, col) for p in open_patterns if col < p.chars_per_line}
            if not tones or None in tones:
                self._fit[key] = None
            else:
                self._fit[key] = self.hanzi & ~_union([self._tone[t] for t in sorted(tones)])
        return self._fit[key]

    def fits(self, ch: str, pattern: Pattern, line: int, col: int) -> bool:
        tone = pattern.required_tone(line, col)
        return tone is None or tone in self.gelv.tones(ch)


def _union(masks: list[torch.Tensor]) -> torch.Tensor:
    out = masks[0].clone()
    for m in masks[1:]:
        out |= m
    return out


class VerseState:
    """One poem under a verse mode: its rhyme group, the characters that rhymed, the patterns still open."""

    def __init__(
        self,
        masks: VerseMasks,
        mode: str,
        weight: float,
        chars_per_line: int | None,
        rhyme: str | None = None,
    ):
        if mode not in VERSE_MODES:
            raise ValueError(f"not a verse mode: {mode}")
        self.masks = masks
        self.mode = mode
        self.weight = weight
        self.n = chars_per_line  # None while an auto form's first line is open
        self.groups: frozenset | None = frozenset([masks.gelv.resolve_group(rhyme)]) if rhyme else None
        self.used: list[int] = []  # ids that have rhymed
        self.first_line: list[str] = []
        lengths = (chars_per_line,) if chars_per_line else (5, 7)
        # 8-line patterns: a 4-line poem's are their first four lines
        self.misfits: dict[Pattern, int] | None = (
            {p: 0 for n in lengths for p in patterns(n, 8)} if mode == "soft" else None
        )

    def open_patterns(self, col: int) -> tuple[Pattern, ...]:
        live = [p for p in self.misfits if col < p.chars_per_line]
        fewest = min(self.misfits[p] for p in live)
        return tuple(p for p in live if self.misfits[p] == fewest)

    def _last(self, col: int) -> bool:
        """Is column `col` the last of its line? (An auto first line ends at 5 or 7: only 7 is certain.)"""
        return col == self.n - 1 if self.n is not None else col == 6

    def next(self, line: int, col: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """For the character at (line, col), 0-based: (a mask it must be within, the Chinese characters
        that lose `weight` nats); either may be None."""
        want = None
        if self._last(col) and line % 2 == 1:
            want = self.masks.rhyme(self.groups, self.used)
        elif self._last(col) and line == 0:
            want = self.masks.first_end(self.groups)
        if want is not None and self.mode == "soft-rhyme":
            return None, self.masks.hanzi & ~want
        if self.misfits is not None and line < 8:
            return want, self.masks.misfits(self.open_patterns(col), line, col)
        return want, None

    def push(self, token: int, ch: str, line: int, col: int) -> None:
        """Record the character at (line, col): forced (seed, acrostic) or sampled alike."""
        if line == 0:
            self.first_line.append(ch)
        if self.misfits is not None and line < 8:
            for p in self.misfits:
                if col < p.chars_per_line and not self.masks.fits(ch, p, line, col):
                    self.misfits[p] += 1
        if self.n is not None and col == self.n - 1 and line % 2 == 1:
            self._rhymes(token, ch)

    def end_line(self, line: int, length: int) -> None:
        """A line is complete: the first fixes an auto form's length and, 平-only and rhyming, the group."""
        if line != 0:
            return
        if self.n is None:
            self.n = length
            if self.misfits is not None:
                self.misfits = {p: k for p, k in self.misfits.items() if p.chars_per_line == length}
        last = self.first_line[-1] if self.first_line else ""
        if last and self.masks.gelv.tones(last) == {PING}:
            self._rhymes(self.masks.stoi.get(last, -1), last)

    def _rhymes(self, token: int, ch: str) -> None:
        groups = self.masks.gelv.ping_groups(ch)
        narrowed = groups if self.groups is None else groups & self.groups
        if narrowed:  # a forced character that cannot rhyme leaves the group as it was
            self.groups = frozenset(narrowed)
        if token >= 0:
            self.used.append(token)
