"""`python -m core.experiments optimizers|lr-sweep|init`: the report's experiments, reproducible, resumable.

  optimizers  the same model, seed and data order trained with each optimizer for the same budget
  lr-sweep    short runs per (optimizer, learning rate); the best lr per optimizer
  init        zero initialisation against random schemes: hidden-unit symmetry, loss plateau

Results go to docs/results/ (--out): <experiment>-<corpus>.json (every number), .md (tables), .png
(matplotlib, if installed). Training runs live in <checkpoints>/experiments/<experiment>-<corpus>/<run>/,
ordinary run folders the workbench can open. Running a command again skips finished runs and resumes
interrupted ones; --fresh starts them again. Training flags not listed here (e.g. --hidden-size 128,
--device cuda, --lr-patience 2 for the plateau schedule instead of a constant lr) are passed on to every
`python -m core.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from core.cli import ArgumentParser, print_json, run
from core.errors import PoemError
from core.experiments import results as out
from core.experiments.optimizers import (
    Plan,
    check_optimizers,
    machine,
    run_comparison,
    run_sweep,
    sweep_grid,
)
from core.experiments.runs import Budget, RunSpec, parse_extra_flags, slug
from core.experiments.symmetry import SCHEMES, InitSettings, run_init_experiment
from core.options import add_option, add_spec, device_problem
from core.training.backends import OPTIMIZERS
from core.training.settings import TrainConfig

LR = TrainConfig.specs()["lr"]


def _csv(kind):
    def parse(text: str):
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        for value in values:  # a learning rate is checked as --lr is (finite, > 0)
            if kind is float and (problem := LR.problem(value)):
                raise argparse.ArgumentTypeError(f"{value:g}: {problem}")
        return values

    return parse


def _lr_pairs(text: str) -> dict[str, float]:
    pairs = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            pairs[name.strip()] = LR.parse(value)
        except (ValueError, PoemError) as exc:
            raise argparse.ArgumentTypeError(f"expected OPTIMIZER=LR[,...], got {text!r} ({exc})") from None
    return pairs


def _like(p: ArgumentParser, name: str, default, help: str | None = None) -> None:
    """A flag declared as TrainConfig's setting of that name (its kind and range), with its own default."""
    spec = TrainConfig.specs()[name]
    add_spec(p, dataclasses.replace(spec, default=default, help=help or spec.help, optional=default is None))


def _common(p: ArgumentParser) -> None:
    p.add_argument(
        "--corpus", default="tang300", help="tang300, quantangshi or a user corpus (default tang300)"
    )
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of all runs")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="where tables and plots go")
    _like(p, "seed", 2019, "the seed every run shares")
    p.add_argument("--fresh", action="store_true", help="delete this experiment's runs and start again")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress or terminal plot on stderr")


def _training(p: ArgumentParser) -> None:
    p.add_argument("--preset", help="model preset (default: the corpus's own, e.g. tang300)")
    add_option(
        p, "budget_steps", int, None, "optimizer steps per run (deterministic; recommended)", low=1,
        high=10**9, none="none",
    )  # fmt: skip
    add_option(
        p, "budget_minutes", float, None, "wall-clock minutes per run", low=0, low_open=True, high=10**6,
        none="none",
    )  # fmt: skip
    _like(
        p, "eval_every", None, "steps between evaluations besides epoch ends (default: none when the budget "
        "spans ≥ 10 epochs, else budget/20, at least 5)",
    )  # fmt: skip
    _like(p, "patience", 0, "early-stopping patience (0: none)")
    add_option(
        p, "threads", int, None, "OMP_NUM_THREADS for each run (1 is fastest on a busy machine)", low=1,
        high=1024, none="torch's choice",
    )  # fmt: skip
    add_option(p, "jobs", int, 1, "runs trained at once (use --threads 1)", low=1, high=256)
    p.add_argument("--dry-run", action="store_true", help="print the core.train commands, run nothing")
    add_option(
        p, "extend", int, 2, "sweep: extend the grid this many times while the best lr is at one of its ends",
        low=0, high=100,
    )  # fmt: skip


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m core.experiments",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    o = sub.add_parser("optimizers", help="compare the optimizers on one budget", allow_abbrev=False)
    _common(o)
    _training(o)
    o.add_argument("--optimizers", type=_csv(str), default=list(OPTIMIZERS), help="comma-separated")
    o.add_argument(
        "--lr", type=_lr_pairs, default={}, help="learning rates, e.g. adam=3e-3,sgd=1 (override the sweep)"
    )
    o.add_argument("--sweep", action="store_true", help="first choose each lr by the sweep (resumable)")
    add_option(
        o, "sweep_steps", int, None, "steps per sweep run", low=1, high=10**9, none="a quarter of the budget"
    )
    add_option(o, "sweep_minutes", float, None, "minutes per sweep run", low=0, low_open=True, high=10**6)

    s = sub.add_parser(
        "lr-sweep", help="short runs per (optimizer, lr); the best lr each", allow_abbrev=False
    )
    _common(s)
    _training(s)
    s.add_argument("--optimizer", "--optimizers", dest="optimizers", type=_csv(str), default=list(OPTIMIZERS))
    s.add_argument("--lrs", type=_csv(float), help="learning rates to try (default: LR_GRID per optimizer)")

    i = sub.add_parser("init", help="zero initialisation against random schemes", allow_abbrev=False)
    _common(i)
    d = InitSettings()
    i.add_argument("--schemes", type=_csv(str), default=list(SCHEMES), help="comma-separated init schemes")
    add_option(i, "steps", int, d.steps, "training steps per scheme", low=1, high=10**7)
    for name in ("embed_size", "hidden_size", "num_layers", "batch_size", "optimizer", "lr"):
        _like(i, name, getattr(d, name))
    _like(i, "dropout", d.dropout, "dropout (0: only the init breaks symmetry)")
    add_option(i, "device", str, d.device, "cpu or cuda (cuda:N)", test=device_problem)
    add_option(i, "threads", int, 1, "torch threads (1: the model is small)", low=1, high=1024)
    return parser


# --- progress on stderr ------------------------------------------------------------------------------------


class Progress:
    """One line per run state and per evaluation, on stderr (nothing with --quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def say(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def state(self, spec: RunSpec, state: str) -> None:
        words = {"done": "done, skipped", "failed": "failed before, skipped (--fresh retries)"}
        self.say(f"{spec.name} (lr {spec.lr:g}): {words.get(state, state)}  [{spec.run_dir}]")

    def event(self, spec: RunSpec, e: dict) -> None:
        if e["event"] == "eval":
            self.say(
                f"  {spec.name:>14} step {e['step']:6d}  dev ppl {e['dev_ppl']:10.2f}  "
                f"best {e.get('best_dev_ppl') or e['dev_ppl']:10.2f}  {e.get('elapsed_s', 0):7.1f}s"
            )
        elif e["event"] == "error":
            self.say(f"  {spec.name:>14} {e.get('message', '')}")
        elif e["event"] == "done":
            self.say(f"  {spec.name:>14} {e['status']} at step {e['step']}, {e['elapsed_s']:.0f}s")


# --- commands --------------------------------------------------------------------------------------------


def make_plan(args, budget: Budget, extra: dict) -> Plan:
    return Plan(
        corpus=args.corpus,
        budget=budget,
        preset=args.preset,
        seed=args.seed,
        eval_every=args.eval_every,
        patience=args.patience,
        extra=extra,
        checkpoints=args.checkpoints,
    )


def print_plan(specs: list[RunSpec]) -> None:
    from core.experiments.runs import argv_for, run_state

    for spec in specs:
        state = run_state(spec)
        argv = argv_for(spec, state)
        sys.stdout.write(f"# {spec.name}: {state}\n" + (shlex.join(argv) + "\n" if argv else ""))


def sweep_budget(args) -> Budget:
    steps, minutes = args.sweep_steps, args.sweep_minutes
    if steps is None and minutes is None:
        steps = max(1, args.budget_steps // 4) if args.budget_steps else None
        minutes = args.budget_minutes / 4 if args.budget_minutes and not args.budget_steps else None
    return Budget(steps, minutes)


def do_sweep(args, plan: Plan, grid: dict, progress: Progress) -> dict:
    path = args.out / f"lr-sweep-{slug(args.corpus)}.json"
    previous = None
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
    sweep = run_sweep(
        plan,
        grid,
        fresh=args.fresh,
        previous=previous,
        extend=args.extend,
        jobs=args.jobs,
        on_state=progress.state,
        on_event=progress.event,
    )
    sweep["command"] = args.command_line
    for opt in grid:
        sweep["optimizers"][opt]["command"] = args.command_line
    out.write_json(path, sweep)
    out.write_text(path.with_suffix(".md"), out.sweep_markdown(sweep))
    sweep["outputs"] = {"json": str(path), "md": str(path.with_suffix(".md"))}
    progress.say(f"chosen learning rates: {sweep['chosen']}  ->  {path}")
    return sweep


def cmd_optimizers(args, extra: dict, progress: Progress) -> dict:
    optimizers = check_optimizers(args.optimizers)
    unknown = sorted(set(args.lr) - set(OPTIMIZERS))
    if unknown:
        raise PoemError(f"--lr: unknown optimizer {unknown[0]!r}")
    plan = make_plan(args, Budget(args.budget_steps, args.budget_minutes), extra)
    if args.dry_run:
        from core.experiments.optimizers import optimizer_specs, sweep_specs

        if args.sweep:
            sweep_plan = make_plan(args, sweep_budget(args), extra)
            print_plan(sweep_specs(sweep_plan, sweep_grid(optimizers)))
            sys.stdout.write("# then, with each optimizer's lr chosen by the sweep (DEFAULT_LR shown):\n")
        print_plan(optimizer_specs(plan, optimizers, args.lr))
        return {}
    lrs, sources, sweep = {}, {}, None
    if args.sweep:
        sweep_plan = make_plan(args, sweep_budget(args), extra)
        sweep = do_sweep(args, sweep_plan, sweep_grid(optimizers), progress)
        lrs.update(sweep["chosen"])
        sources.update(dict.fromkeys(sweep["chosen"], "sweep"))
    lrs.update(args.lr)
    sources.update(dict.fromkeys(args.lr, "given"))
    result = run_comparison(
        plan,
        optimizers,
        lrs,
        sources,
        fresh=args.fresh,
        sweep=sweep,
        jobs=args.jobs,
        on_state=progress.state,
        on_event=progress.event,
    )
    result["command"] = args.command_line
    base = args.out / f"optimizers-{slug(args.corpus)}"
    title = f"{len(optimizers)} optimizers on {args.corpus}, {out.budget_text(result['budget'])} each"
    result["plot"] = out.plot_curves(result["runs"], base.with_suffix(".png"), title)
    if result["plot"] is None:
        result["plot_note"] = "no PNG: matplotlib is not installed (pip install matplotlib)"
    out.write_json(base.with_suffix(".json"), result)
    out.write_text(base.with_suffix(".md"), out.optimizers_markdown(result))
    result["outputs"] = {
        "json": str(base.with_suffix(".json")),
        "md": str(base.with_suffix(".md")),
        "png": result["plot"],
    }
    if not args.quiet and not args.json:
        progress.say("\n" + out.runs_table(result["runs"]))
        for xkey, xlabel in (("step", "optimizer step"), ("elapsed_s", "wall time (s)")):
            series = [
                (r["optimizer"], [p[xkey] for p in r["curve"]], [p["dev_ppl"] for p in r["curve"]])
                for r in result["runs"]
            ]
            progress.say(
                out.terminal_plot(series, title=f"dev perplexity against {xlabel}", xlabel=xlabel, log_y=True)
            )
    progress.say(f"wrote {base}.json, .md" + (", .png" if result["plot"] else f" ({result['plot_note']})"))
    return result


def cmd_sweep(args, extra: dict, progress: Progress) -> dict:
    grid = sweep_grid(args.optimizers, args.lrs)
    plan = make_plan(args, Budget(args.budget_steps, args.budget_minutes), extra)
    if args.dry_run:
        from core.experiments.optimizers import sweep_specs

        print_plan(sweep_specs(plan, grid))
        return {}
    sweep = do_sweep(args, plan, grid, progress)
    if not args.quiet and not args.json:
        progress.say("\n" + out.sweep_table(sweep))
    return sweep


def cmd_init(args, progress: Progress) -> dict:
    import torch

    from core.model import INIT_SCHEMES

    unknown = [s for s in args.schemes if s not in INIT_SCHEMES]
    if unknown or not args.schemes:
        raise PoemError(f"--schemes: choose from {', '.join(INIT_SCHEMES)}")
    torch.set_num_threads(args.threads)
    settings = InitSettings(
        corpus=args.corpus,
        schemes=tuple(args.schemes),
        steps=args.steps,
        embed_size=args.embed_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        dropout=args.dropout,
        seed=args.seed,
        device=args.device,
    )

    def on_record(scheme: str, r: dict) -> None:
        spread = max(ly["activation_spread"] for ly in r["layers"])
        grad = max(ly["grad_row_spread"] for ly in r["layers"])
        loss = f"{r['train_loss']:.3f}" if r["train_loss"] is not None else "  -  "
        progress.say(
            f"  {scheme:>8} step {r['step']:5d}  train loss {loss}  dev ppl {r['dev_ppl']:9.2f}  "
            f"max|h_j-h_k| {spread:.3g}  max grad-row diff {grad:.3g}"
        )

    cache = args.checkpoints / "experiments" / f"init-{slug(args.corpus)}"
    result = run_init_experiment(settings, cache, fresh=args.fresh, on_record=on_record)
    result["command"] = args.command_line
    result["machine"] = machine()
    base = args.out / f"init-{slug(args.corpus)}"
    result["plot"] = out.plot_init(result, base.with_suffix(".png"))
    if result["plot"] is None:
        result["plot_note"] = "no PNG: matplotlib is not installed (pip install matplotlib)"
    out.write_json(base.with_suffix(".json"), result)
    out.write_text(base.with_suffix(".md"), out.init_markdown(result))
    result["outputs"] = {
        "json": str(base.with_suffix(".json")),
        "md": str(base.with_suffix(".md")),
        "png": result["plot"],
    }
    if not args.quiet and not args.json:
        progress.say("\n" + out.init_table(result))
        series = [
            (s["scheme"], [r["step"] for r in s["records"]], [r["dev_ppl"] for r in s["records"]])
            for s in result["schemes"]
        ]
        progress.say(out.terminal_plot(series, title="dev perplexity", xlabel="step", log_y=True))
    progress.say(f"wrote {base}.json, .md" + (", .png" if result["plot"] else f" ({result['plot_note']})"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.command_line = "python -m core.experiments " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command == "init" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    progress = Progress(args.quiet)
    if args.command == "init":
        result = cmd_init(args, progress)
    else:
        extra = parse_extra_flags(rest)
        if args.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        result = (
            cmd_optimizers(args, extra, progress)
            if args.command == "optimizers"
            else cmd_sweep(args, extra, progress)
        )
    if args.json and result:
        print_json(result)
    return 0


def _terminate(_signum, _frame):
    raise KeyboardInterrupt  # like Ctrl-C: the running child saves a checkpoint; the next call resumes it


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    run(main)
