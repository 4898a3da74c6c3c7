"""The form state machine: which tokens may come next for one poem, given what it holds so far.

The sampler keeps one per poem and masks the vocabulary with it, so that the poem has the shape the user
asked for:

- form "auto" (the default): the model chooses 5 or 7 characters per line with its first line and 4 or 8
  lines, then every line has that length, "，" ends odd lines, "。" even ones, and `<eos>` follows;
- form 5 or 7 with lines 4 or 8: exactly that (五绝, 七绝, 五律, 七律);
- form "free": the model's own lines (3-11 characters), ending cleanly after a "。" (at least 4 lines, an
  even count), within max_chars: a line closes early, or with a final mark, when the lines the poem still
  owes (the acrostic's, the couplet's second) would not fit otherwise;
- an acrostic (藏头诗) puts its k-th character at the head of line k;
- no character more than `max_repeats` times, and no line twice (the report's poems repeated one line);
  `max_repeats` 0 lifts both, so that τ 1 without truncation samples the model exactly, within the form.
Seed characters pass through the same machine, so a seed that cannot start such a poem is refused early.
"""

from __future__ import annotations

from collections import Counter

import torch

from core.corpus.lines import FINAL_ENDS, LINE_ENDS
from core.corpus.vocab import BOS, EOS
from core.generation.settings import SampleSettings

FREE_MIN_LINE, FREE_MAX_LINE = 3, 11
FREE_LINE_COST = FREE_MIN_LINE + 1  # the fewest characters a free line takes, its mark included


def free_min_lines(acrostic_len: int) -> int:
    """The fewest lines of a free-form poem: 4, or the acrostic's, made even (couplets)."""
    return max(4, acrostic_len + acrostic_len % 2)


class PoemForm:
    """Which tokens may come next for one poem, given what it holds so far."""

    def __init__(self, settings: SampleSettings, stoi: dict[str, int]):
        self.form = settings.form
        self.n = int(settings.form) if settings.form in ("5", "7") else None
        self.total_lines = settings.lines if self.n else None
        if self.n and self.total_lines is None:
            self.total_lines = 4
        self.acrostic = [stoi[c] for c in settings.acrostic]
        self.max_repeats = settings.max_repeats
        self.max_chars = settings.max_chars
        self.comma, self.period = stoi["，"], stoi["。"]
        self.line_end_ids = {stoi[c] for c in LINE_ENDS if c in stoi}
        self.final_end_ids = {stoi[c] for c in FINAL_ENDS if c in stoi}
        self.free_min_lines = free_min_lines(len(self.acrostic))
        # state
        self.lines_done = 0
        self.line: list[int] = []
        self.finished_lines: list[tuple[int, ...]] = []
        self.counts: Counter[int] = Counter()
        self.length = 0
        self.last = BOS
        self.done = False
        self.gelv = None  # a core.gelv GelvConstraint when sampling regulated verse
        self.verse = None  # a core.generation.prosody_modes VerseState with --prosody rhyme|soft-rhyme|soft
        self.itos: list[str] = []
        self.priming = False  # True while the seed is fed: its characters are imposed, not sampled

    def _line_len(self) -> int | None:
        """The line length this poem is bound to (None while an auto form's first line is open)."""
        if self.n:
            return self.n
        if self.form == "auto" and self.finished_lines:
            return len(self.finished_lines[0])
        return None

    def _end_mark(self) -> int:
        return self.comma if self.lines_done % 2 == 0 else self.period

    def free_lines_owed(self, mark: int | None = None) -> int:
        """Free form: the lines still to write once the open line closes with `mark` (None: the best
        mark), so that the poem ends after an even count of at least free_min_lines lines, on a final
        mark."""
        number = self.lines_done + 1
        if number < self.free_min_lines:
            return self.free_min_lines - number
        if number % 2:
            return 1
        return 0 if mark is None or mark in self.final_end_ids else 2

    def rule(self) -> tuple[str, object]:
        """("force", token), or ("choose", (what, line ends allowed)) for the next position: what is
        "content", "content_or_ends" (content or one of the ends) or "eos_or_content"."""
        k = len(self.line)
        if self.n or self.form == "auto":
            target = self._line_len()
            limit = self.total_lines
            if self.form == "auto" and limit is None:
                # the model picks 4 or 8 lines (more when the acrostic needs them)
                if self.lines_done in (4, 8) and k == 0:
                    if self.lines_done >= len(self.acrostic) and self.lines_done == 4:
                        return "choose", ("eos_or_content", None)
                    if self.lines_done >= len(self.acrostic):
                        return "force", EOS
                limit = 8
            if k == 0 and self.lines_done == limit:
                return "force", EOS
            if target is not None and k == target:
                return "force", self._end_mark()
            if target is None and k == 7:
                return "force", self._end_mark()
            if k == 0 and self.lines_done < len(self.acrostic):
                return "force", self.acrostic[self.lines_done]
            if target is None and k == 5:
                return "choose", ("content_or_ends", {self._end_mark()})
            return "choose", ("content", None)
        # free form
        if k == 0 and self.lines_done < len(self.acrostic):
            return "force", self.acrostic[self.lines_done]
        if k == 0:
            may_end = self.last in self.final_end_ids and self.lines_done >= 4 and self.lines_done % 2 == 0
            if self.length >= self.max_chars - FREE_MAX_LINE - 1 and may_end:
                return "force", EOS
            return "choose", ("eos_or_content" if may_end else "content", None)
        room = self.max_chars - self.length  # characters still allowed, marks included
        # one more character, then this line's mark and the shortest lines still owed, must fit
        if k >= FREE_MAX_LINE or room < 2 + FREE_LINE_COST * self.free_lines_owed():
            return "force", self._end_mark()  # "。" on an even line: a final mark, nothing more owed
        if k >= FREE_MIN_LINE:
            ends = {t for t in self.line_end_ids if room >= 1 + FREE_LINE_COST * self.free_lines_owed(t)}
            return "choose", ("content_or_ends", ends)
        return "choose", ("content", None)

    def banned(self) -> set[int]:
        """Content tokens this poem may not take now: over-used characters, a line's duplicate ending."""
        out = {t for t, c in self.counts.items() if self.max_repeats and c >= self.max_repeats}
        target = self._line_len()
        if self.max_repeats and target is not None and len(self.line) == target - 1:
            prefix = tuple(self.line)
            out |= {line[-1] for line in self.finished_lines if line[:-1] == prefix}
        return out

    def advance(self, token: int) -> None:
        self.last = token
        if token == EOS:
            self.done = True
            return
        self.length += 1
        if token in self.line_end_ids:
            if self.verse is not None:
                self.verse.end_line(self.lines_done, len(self.line))
            self.finished_lines.append(tuple(self.line))
            self.line = []
            self.lines_done += 1
        else:
            self.line.append(token)
            self.counts[token] += 1
            if self.verse is not None:
                self.verse.push(token, self.itos[token], self.lines_done, len(self.line) - 1)
            if self.gelv is not None:
                forced = self.priming or (self.lines_done < len(self.acrostic) and len(self.line) == 1)
                self.gelv.push(self.itos[token], forced=forced)

    def allows(self, token: int, content: torch.Tensor) -> bool:
        kind, arg = self.rule()
        if kind == "force":
            return token == arg
        what, ends = arg
        if token == EOS:
            return what == "eos_or_content"
        if token in self.line_end_ids:
            return what == "content_or_ends" and token in ends
        return bool(content[token]) and token not in self.banned()
