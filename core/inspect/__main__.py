"""`python -m core.inspect CKPT POEM [--json]`: one poem inside the LSTM (core.inspection).

Each character's surprisal (−log p, nats) and the model's top-5 predictions for its place; the input,
forget and output gates and the cell state of chosen units at every step; the units that best track the
position in the line, the line index and the rhyme position over the dev split (Pearson, cached next to the
checkpoint); and ‖∂L/∂h_t‖ over t for the loss of the poem's last character (Part 1's backward).
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.options import add_option

BARS = "▁▂▃▄▅▆▇█"


def _units(text: str) -> list[tuple[int, int]]:
    import argparse

    try:
        pairs = [part.split(":") if ":" in part else ("0", part) for part in text.split(",") if part.strip()]
        return [(int(k), int(u)) for k, u in pairs]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER:UNIT,… such as 0:12,1:300 (got {text!r})") from None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.inspect", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint, or a run folder (its best)")
    p.add_argument("poem", help="the poem's text (- reads it from stdin)")
    p.add_argument("--units", type=_units, help="the units whose gates to show, LAYER:UNIT,… (default: the "
                   "tracking units, then the most active)")  # fmt: skip
    p.add_argument("--no-search", action="store_true", help="skip the search for tracking units")
    add_option(p, "poems", int, 300, "dev poems the unit search reads (a sample)", low=1, high=100_000)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def bars(values: list[float], low: float | None = None, high: float | None = None) -> str:
    low = min(values) if low is None else low
    high = max(values) if high is None else high
    span = (high - low) or 1.0
    return "".join(BARS[min(len(BARS) - 1, max(0, int((v - low) / span * len(BARS))))] for v in values)


def show(result: dict) -> None:
    import math

    from rich.console import Console
    from rich.text import Text

    from core.inspection.units import LABELS

    console = Console()
    poem = Text()
    for ch, s in zip(result["chars"], result["surprisal"], strict=True):
        level = min(1.0, s / 10)
        poem.append(ch, style=f"rgb({int(80 + 175 * level)},{int(220 - 170 * level)},80)")
    console.print(Text("surprisal (green: expected, red: surprising): ", style="dim") + poem)
    ranked = sorted(zip(result["surprisal"], result["chars"], strict=True), reverse=True)[:5]
    worst = ", ".join(f"{c} {s:.1f}" for s, c in ranked)
    console.print(f"perplexity {result['perplexity']:.1f}; most surprising: {worst}")
    last = result["chars"][-1]
    top = "  ".join(f"{c} {p:.2f}" for c, p in result["top5"][-1])
    console.print(f"top-5 where {last} stands: {top}")
    console.print("top-5 after the poem: " + "  ".join(f"{c} {p:.2f}" for c, p in result["next_top5"]))
    steps = "".join(ch if len(ch) == 1 else "^" for ch in result["inputs"])
    for layer in result["gates"]:
        for n, unit in enumerate(layer["units"]):
            console.print(f"[b]layer {layer['layer']} unit {unit}[/b]  {steps}")
            for name in ("i", "f", "o"):
                console.print(f"  {name}  {bars(layer[name][n], 0.0, 1.0)}")
            console.print(f"  c  {bars(layer['c'][n])}")
    for u in result["units"]:
        what = LABELS.get(u["label"], u["label"])
        console.print(
            f"{what:>35}: layer {u['layer']} unit {u['unit']} ({u['state']}) r = {u['correlation']:+.3f}"
        )
    norms = [math.log10(max(v, 1e-30)) for v in result["grad_norms"]]
    console.print(
        f"‖∂L/∂h_t‖ for the loss of {result['grad_target']['char']}, t = 0 … {len(norms) - 1} (log scale): "
        f"{bars(norms)}  from {result['grad_norms'][0]:.2e} to {result['grad_norms'][-1]:.2e}"
    )


def main(argv: list[str] | None = None) -> int:
    from core.inspection import Inspector

    args = build_parser().parse_args(argv)
    text = sys.stdin.read() if args.poem == "-" else args.poem
    insight = Inspector.load(args.checkpoint)
    units = {} if args.no_search else insight.units(limit=args.poems)
    result = insight.inspect(text, units=units, select=args.units)
    if args.json:
        print_json(result)
    else:
        show(result)
    return 0


if __name__ == "__main__":
    run(main)
