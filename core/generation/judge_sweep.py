"""`core.judge --sweep`: the judge over a grid of sampling settings, against one set of real poems.

Writes PREFIX.json (every figure of every setting, the real poems', the checkpoint), PREFIX.md (the table)
and PREFIX.svg (discriminator accuracy against rhyme rate; no plotting library needed). A setting already
in PREFIX.json for the same checkpoint, poems and seed is not judged again, so an interrupted sweep goes on
where it stopped and a sweep can be widened. Each row also carries its log-probability cost: the mean
log-probability per character of its poems under the model, minus that of pure samples (PURE, judged once
against the same real poems): what the truncation and the masks trade for rhyme and metre. `pick` chooses
the defaults (README, docs/REPORT.md §10).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from core.generation.prosody_modes import SOFT_MODES
from core.generation.settings import SampleSettings

AXES = ("prosody", "prosody_weight", "temperature", "top_p", "repetition_penalty")
# the issue's bar for the default settings (distinct-2: within this of the real poems')
TARGETS = {"rhyme_rate": 0.85, "gelv_passed": 0.50, "distinct_2": 0.05, "neural": 0.70, "ngram": 0.60}
# what the samples' own figures must meet before the discriminators choose among settings
FORM_TARGETS = ("rhyme_rate", "gelv_passed", "distinct_2")
# sampling the model exactly within the form: τ 1, no truncation, no penalty, no masks, repeated lines allowed
PURE = dict(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_repeats=0, prosody="none")
MODE_COLOURS = {
    "none": "#888888",
    "soft-rhyme": "#1f77b4",
    "rhyme": "#2ca02c",
    "soft": "#d62728",
    "gelv": "#9467bd",
}


def grid(base: SampleSettings, values: dict[str, list]) -> list[SampleSettings]:
    """Every combination of the axes' values (the weight varies only for the soft modes)."""
    out, seen = [], set()
    names = [a for a in AXES if values.get(a)]
    for combo in itertools.product(*(values[a] for a in names)):
        d = {**base.to_dict(), **dict(zip(names, combo, strict=True)), "gelv": False}
        if d["prosody"] not in SOFT_MODES:
            d["prosody_weight"] = base.prosody_weight
        s = SampleSettings(**d)
        if key(s) not in seen:
            seen.add(key(s))
            out.append(s)
    return out


def key(s: SampleSettings) -> str:
    weight = f" w{s.prosody_weight:g}" if s.mode in SOFT_MODES else ""
    return (
        f"{s.mode}{weight} t{s.temperature:g} p{s.top_p:g} r{s.repetition_penalty:g} k{s.top_k}"
        f" m{s.max_repeats}"
    )


def run(judge, settings: list[SampleSettings], prefix: Path, say=None) -> dict:
    """Judge each setting (skipping those done), saving after each; returns the whole document."""
    path = prefix.with_suffix(".json")
    who = {"checkpoint": judge.checkpoint, "poems": len(judge.real), "seed": judge.seed, "split": judge.split}
    doc = json.loads(path.read_text()) if path.exists() else {}
    if {k: doc.get(k) for k in who} != who:
        doc = {**who, "corpus": judge.corpus_name, "rows": []}
    doc["real"] = judge.measure_real()
    if "pure" not in doc:
        pure = SampleSettings(**{**PURE, "form": "5"})
        doc["pure"] = {"key": key(pure), "generated": judge.run(pure, discriminate=False)["generated"]}
    done = {row["key"] for row in doc["rows"]}
    for s in settings:
        if key(s) in done:
            continue
        result = judge.run(s)
        row = {
            "key": key(s),
            "settings": result["settings"],
            "generated": result["generated"],
            "discriminators": result["discriminators"],
            "seconds": result["seconds"],
            "example": result["examples"][0]["generated"],
        }
        doc["rows"].append(row)
        add_cost(row, doc["pure"])
        _write(path, json.dumps(doc, ensure_ascii=False, indent=1))
        if say:
            say(summary(row))
    for row in doc["rows"]:
        add_cost(row, doc["pure"])
    doc["pick"] = pick(doc)
    chosen = next((r for r in doc["rows"] if r["key"] == doc["pick"]), None)
    doc["pick_meets_all"] = bool(chosen) and all(meets(chosen, doc["real"]).values())
    doc["pick_flags"] = flags(chosen["settings"]) if chosen else None
    _write(path, json.dumps(doc, ensure_ascii=False, indent=1))
    _write(prefix.with_suffix(".md"), table(doc))
    _write(prefix.with_suffix(".svg"), plot(doc))
    return doc


def meets(row: dict, real: dict) -> dict[str, bool]:
    g, d = row["generated"], row["discriminators"]
    return {
        "rhyme_rate": (g["rhyme_rate"] or 0) >= TARGETS["rhyme_rate"],
        "gelv_passed": (g["gelv_passed"] or 0) >= TARGETS["gelv_passed"],
        "distinct_2": abs(g["distinct_2"] - real["distinct_2"]) <= TARGETS["distinct_2"],
        "neural": d["neural"]["accuracy"] <= TARGETS["neural"],
        "ngram": d["ngram"]["accuracy"] <= TARGETS["ngram"],
    }


def add_cost(row: dict, pure: dict) -> None:
    """The row's mean log-probability per character, minus pure sampling's (negative: less likely poems)."""
    row["logprob_vs_pure"] = round(row["generated"]["mean_logprob"] - pure["generated"]["mean_logprob"], 4)


def pick(doc: dict) -> str | None:
    """Of the settings whose poems meet the rhyme, 格律 and distinct-2 targets, the hardest to tell from real
    poems: the lowest neural accuracy (within 0.01 counts as a tie), then the lower n-gram accuracy, then
    the higher mean log-probability. None when no setting meets those three targets."""
    ok = [r for r in doc["rows"] if all(meets(r, doc["real"])[k] for k in FORM_TARGETS)]
    if not ok:
        return None
    best = min(r["discriminators"]["neural"]["accuracy"] for r in ok)
    tied = [r for r in ok if r["discriminators"]["neural"]["accuracy"] <= best + 0.01]
    return min(
        tied, key=lambda r: (r["discriminators"]["ngram"]["accuracy"], -r["generated"]["mean_logprob"])
    )["key"]


def flags(settings: dict) -> str:
    """The core.generate flags of a row's settings (those a sweep varies, and top-k / max-repeats)."""
    out = [f"--prosody {settings['prosody']}"]
    if settings["prosody"] in SOFT_MODES:
        out.append(f"--prosody-weight {settings['prosody_weight']:g}")
    out += [
        f"-t {settings['temperature']:g}",
        f"--top-p {settings['top_p']:g}",
        f"--top-k {settings['top_k']}",
        f"--repetition-penalty {settings['repetition_penalty']:g}",
        f"--max-repeats {settings['max_repeats']}",
    ]
    return " ".join(out)


def summary(row: dict) -> str:
    g, d = row["generated"], row["discriminators"]
    return (
        f"{row['key']}: rhyme {g['rhyme_rate']}, pass {g['gelv_passed']}, distinct-2 {g['distinct_2']}, "
        f"log p {g['mean_logprob']} ({row.get('logprob_vs_pure', 0):+g} vs pure),"
        f" n-gram {d['ngram']['accuracy']}, neural {d['neural']['accuracy']}"
    )


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _acc(d: dict) -> str:
    return f"{d['accuracy']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"


def _mark(text: str, ok: bool) -> str:
    return f"{text} ✓" if ok else text


def table(doc: dict) -> str:
    """The Markdown table: one row a setting, ✓ on each figure that meets its target, the chosen one."""
    real, pure = doc["real"], doc.get("pure", {}).get("generated")
    head = (
        "| prosody | weight | τ | top-p | penalty | rhyme | 格律 pass | tone conf. | distinct-2 | JS (bits) |"
        " copied | mean log p | Δ log p vs pure | n-gram acc. [95 % CI] | neural acc. [95 % CI] | targets |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| **real poems** ({doc['split']}) | | | | | {_pct(real['rhyme_rate'])} |"
        f" {_pct(real['gelv_passed'])} |"
        f" {real['tone_conformity']} | {real['distinct_2']} | {real['char_js_divergence']} (vs other real) |"
        f" {_pct(real['copy_rate'])} | {real['mean_logprob']} (teacher-forced) | | 0.5 | 0.5 | |"
    ]
    if pure:
        lines.append(
            f"| *pure sampling* (none, max-repeats 0) | | 1 | 1 | 1 | {_pct(pure['rhyme_rate'])} |"
            f" {_pct(pure['gelv_passed'])} | {pure['tone_conformity']} | {pure['distinct_2']} |"
            f" {pure['char_js_divergence']} | {_pct(pure['copy_rate'])} | {pure['mean_logprob']} | 0 |"
            " (not run) | (not run) | |"
        )
    chosen = doc.get("pick")
    for r in sorted(doc["rows"], key=lambda r: r["key"]):
        s, g, d = r["settings"], r["generated"], r["discriminators"]
        ok = meets(r, real)
        mark = "all" if all(ok.values()) else "misses " + ", ".join(k for k, v in ok.items() if not v)
        if r["key"] == chosen:
            mark = f"**chosen** ({mark})"
        weight = f"{s['prosody_weight']:g}" if s["prosody"] in SOFT_MODES else ""
        ng, ne = d["ngram"], d["neural"]
        cost = r.get("logprob_vs_pure")
        lines.append(
            f"| {s['prosody']} | {weight} | {s['temperature']:g} | {s['top_p']:g} |"
            f" {s['repetition_penalty']:g} | {_mark(_pct(g['rhyme_rate']), ok['rhyme_rate'])} |"
            f" {_mark(_pct(g['gelv_passed']), ok['gelv_passed'])} |"
            f" {g['tone_conformity']} | {_mark(str(g['distinct_2']), ok['distinct_2'])} |"
            f" {g['char_js_divergence']} | {_pct(g['copy_rate'])} | {g['mean_logprob']} |"
            f" {'–' if cost is None else f'{cost:+.3f}'} |"
            f" {_mark(_acc(ng), ok['ngram'])} |"
            f" {_mark(_acc(ne), ok['neural'])} |"
            f" {mark} |"
        )
    if chosen:
        verdict = "meets every target" if doc.get("pick_meets_all") else "misses a discriminator target"
        choice = (
            f"Chosen (the lowest neural accuracy among the settings that meet the rhyme, 格律 and distinct-2"
            f" targets; {verdict}): `{chosen}`, i.e. `{doc.get('pick_flags')}`.\n"
        )
    else:
        choice = "No setting meets the rhyme, 格律 and distinct-2 targets: none is chosen.\n"
    intro = (
        f"# Judge sweep: {doc['corpus']}, {doc['poems']} generated vs {doc['poems']} real poems"
        f" ({doc['split']})\n\n"
        f"Checkpoint `{doc['checkpoint']}`, seed {doc['seed']}. Targets (✓ where met): rhyme ≥ 85 %,"
        f" 格律 pass ≥ 50 %, distinct-2 within 0.05 of the real poems', n-gram ≤ 0.60, neural ≤ 0.70."
        f" Δ log p: the mean log-probability per character of the poems under the model, minus that of pure"
        f" samples. Written by `python -m core.judge CKPT --sweep`; every figure is in the JSON file next to"
        f" this one.\n\n"
    )
    return intro + choice + "\n" + head + "\n".join(lines) + "\n"


def plot(doc: dict, width: int = 640, height: int = 420) -> str:
    """Accuracy (y, 0.4 to 1) of both discriminators against rhyme rate (x, 0 to 1), one colour a mode."""
    left, right, top, bottom = 60, 150, 20, 50
    w, h = width - left - right, height - top - bottom

    def x(v):
        return left + w * v

    def y(v):
        return top + h * (1 - (v - 0.4) / 0.6)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif"'
        ' font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<rect x="{x(0.85):.1f}" y="{y(0.7):.1f}" width="{x(1) - x(0.85):.1f}"'
        f' height="{y(0.4) - y(0.7):.1f}" fill="#e8f5e9"/>',
    ]
    for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.1f}</text>')
    for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out.append(f'<text x="{x(t):.1f}" y="{top + h + 16}" text-anchor="middle">{100 * t:.0f} %</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#444"/>')
    out.append(
        f'<line x1="{left}" x2="{left + w}" y1="{y(0.5):.1f}" y2="{y(0.5):.1f}" stroke="#444"'
        ' stroke-dasharray="4 3"/>'
    )
    rr = doc["real"]["rhyme_rate"] or 0
    out.append(
        f'<line x1="{x(rr):.1f}" x2="{x(rr):.1f}" y1="{top}" y2="{top + h}" stroke="#444"'
        ' stroke-dasharray="2 3"/>'
    )
    out.append(f'<text x="{x(rr) - 4:.1f}" y="{top + 12}" text-anchor="end">real poems</text>')
    for r in doc["rows"]:
        c = MODE_COLOURS.get(r["settings"]["prosody"], "#000")
        px = x(r["generated"]["rhyme_rate"] or 0)
        ne, ng = r["discriminators"]["neural"]["accuracy"], r["discriminators"]["ngram"]["accuracy"]
        out.append(f'<circle cx="{px:.1f}" cy="{y(max(ne, 0.4)):.1f}" r="4" fill="{c}"/>')
        out.append(
            f'<rect x="{px - 3.5:.1f}" y="{y(max(ng, 0.4)) - 3.5:.1f}" width="7" height="7" fill="none"'
            f' stroke="{c}"/>'
        )
    out.append(
        f'<text x="{left + w / 2}" y="{height - 10}" text-anchor="middle">rhyme rate of the generated'
        " poems</text>"
    )
    out.append(
        f'<text transform="translate(14 {top + h / 2}) rotate(-90)" text-anchor="middle">discriminator'
        " accuracy (0.5: cannot tell)</text>"
    )
    lx = left + w + 14
    for k, (mode, c) in enumerate(MODE_COLOURS.items()):
        out.append(f'<circle cx="{lx}" cy="{top + 10 + 16 * k}" r="4" fill="{c}"/>')
        out.append(f'<text x="{lx + 10}" y="{top + 14 + 16 * k}">{mode}</text>')
    k = len(MODE_COLOURS) + 1
    out.append(f'<circle cx="{lx}" cy="{top + 10 + 16 * k}" r="4" fill="#444"/>')
    out.append(f'<text x="{lx + 10}" y="{top + 14 + 16 * k}">neural</text>')
    out.append(
        f'<rect x="{lx - 3.5}" y="{top + 6.5 + 16 * (k + 1)}" width="7" height="7" fill="none"'
        ' stroke="#444"/>'
    )
    out.append(f'<text x="{lx + 10}" y="{top + 14 + 16 * (k + 1)}">n-gram</text>')
    out.append(f'<text x="{lx - 4}" y="{top + 14 + 16 * (k + 3)}">green: the targets</text>')
    out.append(f'<text x="{lx - 4}" y="{top + 28 + 16 * (k + 3)}">(rhyme ≥ 85 %,</text>')
    out.append(f'<text x="{lx - 4}" y="{top + 42 + 16 * (k + 3)}">neural ≤ 0.70)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
