"""The workbench's view of core.generation.judge: a checkpoint judged and its result kept next to it, and the
Generate screen's poems set against real poems of the same forms.

A judgement is `<checkpoint stem>.judge.json` beside the checkpoint (core.judge's JSON, plus the
checkpoint's size and mtime when it was judged: best.safetensors is replaced as a run improves, and a
result for an older file is shown as such). The real poems' figures per form come from the checkpoint's
own corpus (test split, dev where there is none) and are computed once per corpus and process.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from core.generation.quality import distinct_2

JUDGE_POEMS = 1000  # generated and real poems (fewer where the split holds fewer), as core.judge's default
REAL_PER_FORM = 1000  # real poems of each form the per-form rates are measured on
STAGE_NAMES = {
    "load": "loading the checkpoint and its corpus",
    "real poems": "measuring the real poems",
    "sampling": "sampling the poems",
    "figures": "rhyme, 格律 and diversity",
    "ngram": "n-gram discriminator (5 folds)",
    "neural": "neural discriminator (5 folds)",
}


def judgement_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_name(Path(checkpoint).stem + ".judge.json")


def stamp(checkpoint: Path) -> list:
    st = Path(checkpoint).stat()
    return [st.st_size, st.st_mtime_ns]


def judge_checkpoint(checkpoint: Path, poems: int = JUDGE_POEMS, seed: int = 0, on_stage=None) -> dict:
    """Judge the checkpoint with its default sampling settings and write the result beside it (atomically);
    on_stage(name) as each of STAGE_NAMES begins. Returns the result."""
    from core.generation.judge import Judge
    from core.generation.settings import SampleSettings
    from core.runs.atomic import atomic_write_bytes

    stage = on_stage or (lambda name: None)
    stage("load")
    was = stamp(checkpoint)
    judge = Judge.load(checkpoint, poems=poems, seed=seed, at_most=True)
    result = judge.run(SampleSettings(form="5"), on_stage=stage)
    result["checkpoint_stamp"] = was
    result["judged_at"] = time.strftime("%Y-%m-%d %H:%M")
    text = json.dumps(result, ensure_ascii=False, indent=1, allow_nan=False)
    atomic_write_bytes(judgement_path(checkpoint), text.encode("utf-8"))
    return result


def read_judgement(checkpoint: Path) -> tuple[dict | None, bool]:
    """(the saved judgement, or None; whether it was made of the checkpoint file as it is now)."""
    try:
        doc = json.loads(judgement_path(checkpoint).read_text(encoding="utf-8"))
        current = doc.get("checkpoint_stamp") == stamp(checkpoint)
    except (OSError, ValueError, AttributeError):
        return None, False
    if not isinstance(doc, dict) or not isinstance(doc.get("generated"), dict):
        return None, False
    return doc, current


def pct(x) -> str:
    return "–" if not isinstance(x, int | float) else f"{100 * x:.0f} %"


def judgement_rows(doc: dict, current: bool) -> list[tuple[str, str]]:
    """The detail panel's lines for a saved judgement: figures generated vs real, the two discriminators."""
    g, r = doc["generated"], doc.get("real", {})
    rows = [
        (
            "judged",
            f"{doc.get('poems')} poems vs {doc.get('poems')} real ({doc.get('split', '?')})"
            f" · {doc.get('judged_at', '?')}" + ("" if current else " · of an older version of this file"),
        ),
        ("rhyme", f"{pct(g.get('rhyme_rate'))} (real {pct(r.get('rhyme_rate'))})"),
        ("格律 pass", f"{pct(g.get('gelv_passed'))} (real {pct(r.get('gelv_passed'))})"),
        ("distinct-2", f"{_num(g.get('distinct_2'))} (real {_num(r.get('distinct_2'))})"),
    ]
    for name, label in (("ngram", "n-gram acc."), ("neural", "neural acc.")):
        d = (doc.get("discriminators") or {}).get(name)
        if isinstance(d, dict):
            lo, hi = d.get("ci95", [None, None])
            rows.append((label, f"{_num(d.get('accuracy'))} [{_num(lo)}, {_num(hi)}] (0.5: cannot tell)"))
    s = doc.get("settings") or {}
    rows.append(
        (
            "settings",
            f"prosody {s.get('prosody')} · τ {s.get('temperature')} · top-k {s.get('top_k')}"
            f" · top-p {s.get('top_p')} · penalty {s.get('repetition_penalty')}",
        )
    )
    return rows


def _num(x) -> str:
    return "–" if not isinstance(x, int | float) else f"{x:.3f}"


# --- the Generate screen's comparison -----------------------------------------------------------------------


@dataclass
class RealForms:
    """The real poems of each regular form (shuffled with a fixed seed) and each form's rates."""

    corpus: str
    poems: dict[str, list[str]]  # form name (五绝…) -> real poems
    rates: dict[str, dict]  # form name -> {"rhyme_rate", "gelv_passed"}


_cache: dict[str, RealForms] = {}
_lock = threading.Lock()


def real_forms(recorded: dict) -> RealForms:
    """The real figures of a checkpoint's corpus (its recorded `corpus` metadata); once per corpus."""
    from core.corpus import load_recorded_corpus
    from core.gelv import quality
    from core.generation.judge import form_name

    key = json.dumps({k: recorded.get(k) for k in ("name", "options", "fingerprint")}, sort_keys=True)
    with _lock:
        if key in _cache:
            return _cache[key]
    corpus = load_recorded_corpus(recorded)
    pool = corpus.splits.get("test") or corpus.splits.get("dev") or []
    poems: dict[str, list[str]] = {}
    for text in pool:
        poems.setdefault(form_name(text), []).append(text)
    poems.pop("free", None)
    rates = {}
    for form, texts in poems.items():
        random.Random(0).shuffle(texts)
        q = quality(texts[:REAL_PER_FORM])
        rates[form] = {"rhyme_rate": q["gelv_rhyme_rate"], "gelv_passed": q["gelv_passed"]}
    found = RealForms(corpus.name, poems, rates)
    with _lock:
        _cache[key] = found
    return found


def session_figures(texts: list[str], real: RealForms) -> dict:
    """The session's regular poems against real poems of the same forms: rhyme rate and 格律 pass (the real
    rates weighted by the session's form counts), distinct-2 (over as many real poems of each form as the
    session has, since distinct-2 falls as a set grows)."""
    from core.gelv import quality
    from core.generation.judge import form_name

    forms = Counter()
    regular = []
    for text in texts:
        form = form_name(text)
        if form in real.rates:
            forms[form] += 1
            regular.append(text)
    out = {"poems": len(texts), "regular": len(regular), "forms": dict(forms)}
    if not regular:
        return out
    q = quality(regular)
    matched = [t for form, n in forms.items() for t in real.poems[form][:n]]
    n = len(regular)

    def weighted(key: str) -> float | None:
        values = [(c, real.rates[f][key]) for f, c in forms.items() if real.rates[f][key] is not None]
        return sum(c * v for c, v in values) / n if values else None

    out["generated"] = {
        "rhyme_rate": q["gelv_rhyme_rate"],
        "gelv_passed": q["gelv_passed"],
        "distinct_2": round(distinct_2(regular), 4),
    }
    out["real"] = {
        "rhyme_rate": weighted("rhyme_rate"),
        "gelv_passed": weighted("gelv_passed"),
        "distinct_2": round(distinct_2(matched), 4) if len(matched) == n else None,
    }
    return out


def figures_line(figures: dict) -> str:
    """`12 poems (五绝 8, 七律 4): rhyme 75 % (real 96 %) · 格律 40 % (real 71 %) · distinct-2 …`."""
    if not figures.get("regular"):
        return f"{figures['poems']} poems, none in a regular form: nothing to set against real poems"
    g, r = figures["generated"], figures["real"]
    forms = ", ".join(f"{f} {c}" for f, c in sorted(figures["forms"].items()))
    free = figures["poems"] - figures["regular"]
    extra = f"; {free} free left out" if free else ""
    return (
        f"this session vs real poems of the same forms — {figures['regular']} poems ({forms}{extra}):"
        f" rhyme {pct(g['rhyme_rate'])} (real {pct(r['rhyme_rate'])})"
        f" · 格律 pass {pct(g['gelv_passed'])} (real {pct(r['gelv_passed'])})"
        f" · distinct-2 {_num(g['distinct_2'])} (real {_num(r['distinct_2'])})"
    )
