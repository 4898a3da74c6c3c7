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


def split_long(text: str, limit: int) -> list[str]:
    """A text of more than `limit` characters as pieces of at most `limit`, cut between lines, after a
    mark that may end a poem (。？！) where there is one; a single line longer than `limit` is cut inside
    and each part closed with 。. A text within the limit comes back whole."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current: list[str] = []  # lines with their marks
    size = 0
    for line in split_lines(text, keep_marks=True):
        while len(line) > limit:  # one line too long for any piece: cut inside it
            if current:
                pieces.append("".join(current))
                current, size = [], 0
            pieces.append(line[: limit - 1] + "。")
            line = line[limit - 1 :]
        if size + len(line) > limit:
            ends = [i for i, part in enumerate(current) if part[-1:] in FINAL_ENDS]
            cut = ends[-1] + 1 if ends else len(current)
            pieces.append("".join(current[:cut]))
            current = current[cut:]
            size = sum(map(len, current))
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return [p for p in pieces if p]
