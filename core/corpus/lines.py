"""A poem's lines: the one place that says which marks end a line and how a text splits into lines.

A poem is one string, its lines joined with the full-width mark that closes each (core.corpus.clean makes
every corpus, seed and sampled poem so): 白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
"""

from __future__ import annotations

LINE_ENDS = "，。？！；"  # a mark that closes a line
FINAL_ENDS = "。？！"  # the marks a poem (or a couplet) may end with


def split_lines(text: str, *, keep_marks: bool = False) -> list[str]:
    """The lines of a poem, in order: without their closing marks (or, with keep_marks, each with its own).
    Text after the last mark is a line too (a poem being written); an empty line between two marks stays."""
    lines, current = [], ""
    for ch in text:
        if ch in LINE_ENDS:
            lines.append(current + ch if keep_marks else current)
            current = ""
        else:
            current += ch
    return lines + ([current] if current else [])
