"""Figures about the data and the checker: vocabulary coverage, and validation on real poems.

Both read the fetched corpus (core.corpus); the checker itself does not need it.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter

from core.gelv.checker import Gelv, GelvResult, check_all, read_regular_lines
from core.gelv.data import GelvError

# Famous regulated poems of 唐诗三百首, looked up by (title, author) in the corpus file.
FAMOUS = [
    ("春望", "杜甫"),
    ("山居秋暝", "王维"),
    ("送友人", "李白"),
    ("登高", "杜甫"),
    ("登鹳雀楼", "王之涣"),
    ("凉州词", "王翰"),
]
REGULATED_SECTIONS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


# ---------------------------------------------------------------- coverage


def coverage(corpora: tuple[str, ...] = ("tang300", "quantangshi")) -> dict:
    """Share of each corpus's vocabulary (train split) with a known tone; the build's agreement figures."""
    from core.corpus import SPECIALS, load_corpus

    out = {"table": Gelv.load().table.meta["stats"], "corpora": {}}
    for name in corpora:
        corpus = load_corpus(name)
        freq = Counter(ch for poem in corpus.splits["train"] for ch in poem)
        chars = [s for s in corpus.build_vocab().itos if s not in SPECIALS and freq.get(s) and _is_char(s)]
        out["corpora"][name] = vocab_coverage(chars, freq)
    return out


def vocab_coverage(chars: list[str], freq: Counter) -> dict:
    """Coverage of a vocabulary by the table, as a share of characters and of their occurrences."""
    gelv = Gelv.load()
    sources = gelv.table.sources
    tokens = sum(freq[c] for c in chars)

    def share_of(predicate) -> dict:
        hits = [c for c in chars if predicate(c)]
        return {
            "characters": _share(len(hits), len(chars)),
            "tokens": _share(sum(freq[c] for c in hits), tokens),
        }

    unknown = sorted((c for c in chars if not gelv.tones(c)), key=lambda c: (-freq[c], c))
    ping = [c for c in chars if "平" in gelv.tones(c)]
    return {
        "vocab_characters": len(chars),
        "train_tokens": tokens,
        "tone_known": share_of(lambda c: bool(gelv.tones(c))),
        "tone_from_pingshui": share_of(lambda c: "p" in sources.get(c, "")),
        "tone_from_strains_only": share_of(lambda c: sources.get(c, "") in ("s", "sc")),
        "both_tones": share_of(lambda c: len(gelv.tones(c)) == 2),
        "ping_with_rhyme_group": _share(sum(1 for c in ping if gelv.ping_groups(c)), len(ping)),
        "unknown_most_frequent": "".join(unknown[:30]),
    }


def _is_char(s: str) -> bool:
    from core.corpus.clean import is_hanzi

    return len(s) == 1 and is_hanzi(s)


# ---------------------------------------------------------------- validation


def summarize(results: list[GelvResult], total: int) -> dict:
    """Pass and rhyme rates, the tone-conformity distribution and the faults of checked poems."""
    k = len(results)
    conf = sorted(r.conformity for r in results)
    faults = Counter(f.kind for r in results for f in r.faults)
    poems_with = Counter(kind for r in results for kind in {f.kind for f in r.faults})
    only_data = sum(1 for r in results if r.faults and all(f.kind.startswith("unknown") for f in r.faults))
    bins = [(1.0, 1.01), (0.95, 1.0), (0.9, 0.95), (0.8, 0.9), (0.7, 0.8), (0.0, 0.7)]
    return {
        "poems": total,
        "regular": k,
        "passed": _share(sum(r.passed for r in results), k),
        "rhyme_rate": _share(sum(r.rhyme_ok for r in results), k),
        "tone_ok": _share(
            sum(
                1
                for r in results
                if not any(f.kind in ("tone", "unknown_tone", "孤平", "三平尾") for f in r.faults)
            ),
            k,
        ),
        "conformity": {
            "mean": round(statistics.fmean(conf), 4) if conf else None,
            "quantiles": {f"p{q}": round(conf[min(k - 1, q * k // 100)], 4) for q in (10, 25, 50, 75, 90)}
            if conf
            else {},
            "histogram": {
                f"[{lo:.2f},{min(hi, 1.0):.2f}{']' if hi > 1 else ')'}": sum(1 for c in conf if lo <= c < hi)
                for lo, hi in bins
            },
            "strict_mean": round(statistics.fmean(r.strict_conformity for r in results), 4)
            if results
            else None,
        },
        "poems_with_fault": dict(poems_with.most_common()),
        "faults": dict(faults.most_common()),
        "failed_only_for_missing_data": only_data,
        # the first line may borrow a neighbouring group (首句借邻韵), a freedom the checker does not give
        "rhyme_failed_first_line_only": sum(
            1
            for r in results
            if (rf := [f for f in r.faults if f.kind == "rhyme"]) and all(f.line == 0 for f in rf)
        ),
        "forms": dict(Counter(r.form for r in results).most_common()),
        "patterns_passed": dict(Counter(r.pattern.name for r in results if r.passed).most_common()),
    }


def shuffled(poems: list[str], seed: int = 0) -> list[str]:
    """Each poem's characters in a random order (same lines, same characters): a control that a
    checker which passes almost anything would also pass."""
    rng = random.Random(seed)
    out = []
    for poem in poems:
        try:
            lines = read_regular_lines(poem)
        except GelvError:
            continue
        chars = list("".join(lines))
        rng.shuffle(chars)
        n = len(lines[0])
        out.append("，".join("".join(chars[i : i + n]) for i in range(0, len(chars), n)) + "。")
    return out


def tang300_poems() -> list[dict]:
    """唐诗三百首 with section, title and author (the corpus's tang300 keeps only the texts)."""
    from core.corpus import normalize_text, package_dir
    from core.corpus.fetch import TANG300_FILE

    raw = json.loads((package_dir() / TANG300_FILE).read_text(encoding="utf-8"))
    poems = []
    for section in raw["content"]:
        for poem in section["content"]:
            poems.append(
                {
                    "section": normalize_text(section["type"]),
                    "title": normalize_text(poem["chapter"]),
                    "author": normalize_text(poem["author"]),
                    "text": "".join(poem["paragraphs"]),
                }
            )
    return poems


def validate(split: str = "test", corpus_name: str = "quantangshi", seed: int = 0) -> dict:
    """The checker on real poems: a split of 全唐诗, its shuffled control, 唐诗三百首's regulated poems."""
    from core.corpus import load_corpus

    corpus = load_corpus(corpus_name)
    poems = corpus.splits[split]
    out = {"corpus": corpus_name, "split": split, "summary": summarize(check_all(poems), len(poems))}
    control = shuffled(poems, seed)
    out["shuffled_control"] = {
        k: v
        for k, v in summarize(check_all(control), len(control)).items()
        if k in ("poems", "passed", "rhyme_rate", "tone_ok", "conformity")
    }

    gelv = Gelv.load()
    t300 = tang300_poems()
    sections = {}
    for name in REGULATED_SECTIONS:
        texts = [p["text"] for p in t300 if p["section"] == name]
        sections[name] = {
            k: v
            for k, v in summarize(check_all(texts), len(texts)).items()
            if k in ("poems", "regular", "passed", "rhyme_rate", "tone_ok")
        }
    out["tang300_sections"] = sections
    famous = {}
    for title, author in FAMOUS:
        match = next((p for p in t300 if p["title"] == title and p["author"] == author), None)
        if match is None:
            famous[f"{author}《{title}》"] = None
            continue
        result = gelv.check(match["text"])
        famous[f"{author}《{title}》"] = {
            "passed": result.passed,
            "pattern": result.pattern.name,
            "rhyme_group": result.rhyme_group,
            "faults": [f.message for f in result.faults],
        }
    out["famous"] = famous
    return out
