"""A poem's tones as the Generate screen shows them: a mark under each character, the rhymes, a verdict.

A poem in a regular form (4 or 8 lines of 5 or 7 characters) is read by the 格律 checker (core.gelv):
its marks are the tones the pattern reads (○ 平, ● 仄, ？ unknown), characters that break the pattern and
rhymes that miss are faults, and the verdict names the pattern. Any other poem gets each character's own
tones (◐: either) and no verdict. Computed once a poem is complete, in the sampling thread (no UI here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.corpus.lines import LINE_ENDS, split_lines
from core.gelv import Gelv, GelvError, pattern_by_name

RHYME_MARK = "◎"
SHOWN_FAULTS = 2  # fault messages spelled out in the verdict; the rest are counted


@dataclass
class ToneView:
    lines: list[str]  # the poem's lines, each with its closing punctuation
    marks: list[str]  # per line, one mark per character before the punctuation
    rhymes: set[tuple[int, int]] = field(default_factory=set)  # (line, column) of each rhyme position
    faults: set[tuple[int, int]] = field(default_factory=set)  # characters (or rhymes) that break the rules
    verdict: str = ""  # pattern, rhyme group, passed or the faults; "" for a poem in no regular form
    passed: bool | None = None  # None: not a regular-form poem, so not judged


def body(line: str) -> str:
    return line.rstrip(LINE_ENDS)


def tone_view(text: str, pattern: str | None = None, conflicts: list[dict] | tuple = ()) -> ToneView:
    """The tones of one poem; `pattern` (a 格律 poem's own pattern) is the one it is judged against."""
    gelv = Gelv.load()
    lines = split_lines(text, keep_marks=True)
    bodies = [body(line) for line in lines]
    try:
        wanted = pattern_by_name(pattern) if pattern else None
        result = gelv.check(bodies, wanted)
    except (GelvError, ValueError):
        return ToneView(lines, [gelv.tone_marks(b) for b in bodies])
    view = ToneView(lines, [line.marks for line in result.lines], set(result.rhyme_positions))
    for i, line in enumerate(result.lines):
        view.faults |= {(i, j) for j, ok in enumerate(line.conform) if not ok}
    view.faults |= {(f.line, f.col) for f in result.faults}
    view.passed = result.passed
    view.verdict = verdict(result, conflicts)
    return view


def verdict(result, conflicts) -> str:
    """`五绝·仄起·首句不入韵 · rhyme 尤 · passed`, or the faults, the first few spelled out."""
    rhyme = f"rhyme {result.rhyme_group}" if result.rhyme_ok else "rhymes do not agree"
    parts = [result.pattern.name, rhyme]
    faults = result.faults
    if not faults:
        parts.append("passed")
    else:
        shown = "; ".join(f.message for f in faults[:SHOWN_FAULTS])
        more = f" (+{len(faults) - SHOWN_FAULTS} more)" if len(faults) > SHOWN_FAULTS else ""
        parts.append(f"{len(faults)} fault{'s' * (len(faults) != 1)}: {shown}{more}")
    forced = [c for c in conflicts if c.get("forced")]
    if forced:
        parts.append("kept from the seed/acrostic: " + "".join(c["char"] for c in forced))
    return " · ".join(parts)
