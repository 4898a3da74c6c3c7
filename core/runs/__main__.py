"""`python -m core.runs compare RUN RUN … [--baseline RUN] [--json] [--curves]`: runs side by side.

Each RUN is a run folder, a checkpoint (its run), or a folder of runs (an experiment's, e.g.
checkpoints/experiments/optimizers-tang300). The table shows the settings that differ between the runs,
then each run's best dev perplexity, training time and tokens/s, with the difference to the baseline
(the first run unless --baseline names another). With --json, one JSON object (core.runs.compare.compare).
"""

from __future__ import annotations

from pathlib import Path

from core.cli import ArgumentParser, print_json, run


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m core.runs", description="Training runs: compare them.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="runs side by side: differing settings, best perplexity, speed")
    p.add_argument("runs", nargs="+", type=Path, help="run folders, checkpoints, or folders of runs")
    p.add_argument(
        "--baseline", help="the run the others are compared with: its name, path or index (default 0)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--curves", action="store_true", help="with --json: every run's curves as well")
    return parser


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"
    return str(value)


def _delta(row: dict, key: str, digits: int, base: bool) -> str:
    value, delta, ratio = row[key], row["delta"][key], row["ratio"][key]
    if base or delta is None:
        return _fmt(value, digits) + (" (baseline)" if base and value is not None else "")
    sign = "+" if delta >= 0 else "−"
    rel = f", {ratio - 1:+.0%}" if ratio is not None else ""
    return f"{_fmt(value, digits)} ({sign}{_fmt(abs(delta), digits)}{rel})"


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="runs compared", title_justify="left")
    table.add_column("run", no_wrap=True)
    for key in result["differing"]:
        table.add_column(key.replace("_", " "))
    table.add_column("best dev ppl", justify="right")
    table.add_column("time (s)", justify="right")
    table.add_column("tokens/s", justify="right")
    table.add_column("status")
    for row in result["runs"]:
        base = row["name"] == result["baseline"]
        table.add_row(
            ("★ " if base else "") + row["name"],
            *(_fmt(row["settings"].get(k)) for k in result["differing"]),
            _delta(row, "best_dev_ppl", 2, base),
            _delta(row, "elapsed_s", 0, base),
            _delta(row, "tokens_per_s", 0, base),
            row["status"] if not row["error"] else f"{row['status']}; {row['error']}",
        )
    console = Console()
    console.print(table)
    same = ", ".join(f"{k} {_fmt(v)}" for k, v in result["same"].items() if v is not None)
    if same:
        console.print(f"[dim]the same in every run: {same}[/dim]")


def main(argv: list[str] | None = None) -> int:
    from core.runs.compare import compare, load_runs, pick

    args = build_parser().parse_args(argv)
    runs = load_runs(args.runs)
    result = compare(runs, pick(runs, args.baseline), curves=args.curves)
    if args.json:
        print_json(result)
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    run(main)
