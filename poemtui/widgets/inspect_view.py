"""How the Inspect screen draws a result (rich Text): a poem's characters coloured by surprisal, the top-5
at a cursor, a heat map of one unit's gates and cell state, the tracking units and ‖∂L/∂h_t‖ (the result of
core.inspection.Inspector.inspect, the JSON of `python -m core.inspect`)."""

from __future__ import annotations

import math

from rich.text import Text

from core.inspection.units import LABELS

SURPRISAL_TOP = 10.0  # nats: this surprisal and more is drawn fully red
BARS = "▁▂▃▄▅▆▇█"


def surprisal_style(s: float) -> str:
    level = min(1.0, max(0.0, s / SURPRISAL_TOP))
    return f"rgb({int(60 + 195 * level)},{int(210 - 160 * level)},70)"


def poem_text(result: dict, cursor: int) -> Text:
    """The poem, each character coloured by its surprisal; the cursor's character reversed."""
    out = Text()
    for i, (ch, s) in enumerate(zip(result["chars"], result["surprisal"], strict=True)):
        style = surprisal_style(s) + (" reverse bold" if i == cursor else "")
        out.append(ch, style=style)
    return out


def top5_text(result: dict, cursor: int) -> Text:
    ch, s = result["chars"][cursor], result["surprisal"][cursor]
    out = Text(f"{cursor + 1}/{len(result['chars'])} ")
    out.append(ch, style="bold")
    out.append(f"  −log p = {s:.2f} nats (p = {math.exp(-s):.3f})   predicted there: ", style="dim")
    for c, p in result["top5"][cursor]:
        out.append(f"{c}", style="bold green" if c == ch else "bold")
        out.append(f" {p:.3f}  ")
    return out


def units_of(result: dict) -> list[tuple[int, int]]:
    return [(layer["layer"], u) for layer in result["gates"] for u in layer["units"]]


def _cell(value: float, low: float, high: float, diverging: bool) -> str:
    if diverging:
        m = max(abs(low), abs(high)) or 1.0
        v = max(-1.0, min(1.0, value / m))
        if v >= 0:
            return f"rgb({int(40 + 215 * v)},{int(40 + 40 * v)},40)"
        return f"rgb(40,{int(40 + 60 * -v)},{int(40 + 215 * -v)})"
    v = max(0.0, min(1.0, (value - low) / ((high - low) or 1.0)))
    return f"rgb({int(20 + 60 * v)},{int(30 + 200 * v)},{int(60 + 120 * v)})"


def heat_map(result: dict, which: int) -> Text:
    """Rows i, f, o (0 … 1) and c (blue < 0 < red) of the `which`-th selected unit over the steps; the
    columns are the inputs (<bos> first), two cells each, under the characters."""
    units = units_of(result)
    if not units:
        return Text("no units selected", style="dim")
    layer_k, unit = units[which % len(units)]
    layer = next(g for g in result["gates"] if g["layer"] == layer_k)
    n = layer["units"].index(unit)
    head = Text(f"layer {layer_k} unit {unit}  ({which % len(units) + 1}/{len(units)}, u: next)\n", style="b")
    head.append("    ")
    for ch in result["inputs"]:
        head.append(ch if len(ch) == 1 else "^ ")
    head.append("\n")
    for name in ("i", "f", "o", "c"):
        values = layer[name][n]
        low, high = (min(values), max(values)) if name == "c" else (0.0, 1.0)
        head.append(f" {name}  ")
        for v in values:
            head.append("  ", style="on " + _cell(v, low, high, name == "c"))
        head.append(f"  {min(values):+.2f} … {max(values):+.2f}\n" if name == "c" else "\n")
    return head


def units_text(result: dict) -> Text:
    found = result.get("units") or []
    on = result.get("units_found_on") or {}
    out = Text("Units that track the poem's structure\n", style="bold")
    if not found:
        out.append("(search skipped)", style="dim")
        return out
    out.append(
        f"Pearson r over {on.get('poems')} {on.get('split')} poems of {on.get('corpus')}"
        f"{' (cached)' if on.get('cached') else ''}\n",
        style="dim",
    )
    label = None
    for u in found:
        if u["label"] != label:
            label = u["label"]
            out.append(LABELS.get(label, label) + "\n", style="italic")
        out.append(f"  {u['layer']}:{u['unit']:<4} {u['state']}  r = {u['correlation']:+.3f}\n")
    return out


def grad_text(result: dict) -> Text:
    norms = result["grad_norms"]
    logs = [math.log10(max(v, 1e-30)) for v in norms]
    low, high = min(logs), max(logs)
    span = (high - low) or 1.0
    bars = "".join(BARS[min(len(BARS) - 1, int((v - low) / span * len(BARS)))] for v in logs)
    target = result["grad_target"]
    out = Text(f"‖∂L/∂h_t‖ for the loss of {target['char']} (step {target['step']}), log scale\n", style="b")
    out.append(bars + "\n", style="cyan")
    out.append(
        f"t = 0: {norms[0]:.2e} … t = {len(norms) - 1}: {norms[-1]:.2e}  "
        f"(our backward vs autograd: max rel. error {result['grad_check_max_rel_error']:.1e})",
        style="dim",
    )
    return out
