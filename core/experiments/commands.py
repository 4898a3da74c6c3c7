"""What each `python -m core.experiments` subcommand does, and its progress lines on stderr."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

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
from core.experiments.runs import Budget, RunSpec, slug
from core.experiments.symmetry import InitSettings, run_init_experiment
from core.training.backends import OPTIMIZERS

# --- progress on stderr ------------------------------------------------------------------------------------


def save(result: dict, base: Path, plot: str | None, markdown) -> None:
    """An experiment's outputs side by side: its plot (the PNG's path, None without matplotlib), the JSON
    of every number and the Markdown tables; `result` gains their paths."""
    result["plot"] = plot
    if plot is None:
        result["plot_note"] = "no PNG: matplotlib is not installed (pip install matplotlib)"
    out.write_json(base.with_suffix(".json"), result)
    out.write_text(base.with_suffix(".md"), markdown(result))
    paths = {kind: str(base.with_suffix(f".{kind}")) for kind in ("json", "md")}
    result["outputs"] = {**paths, "png": plot}


def wrote(base: Path, result: dict) -> str:
    return f"wrote {base}.json, .md" + (", .png" if result["plot"] else f" ({result['plot_note']})")


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
    plot = out.plot_curves(result["runs"], base.with_suffix(".png"), title)
    save(result, base, plot, out.optimizers_markdown)
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
    progress.say(wrote(base, result))
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
    save(result, base, out.plot_init(result, base.with_suffix(".png")), out.init_markdown)
    if not args.quiet and not args.json:
        progress.say("\n" + out.init_table(result))
        series = [
            (s["scheme"], [r["step"] for r in s["records"]], [r["dev_ppl"] for r in s["records"]])
            for s in result["schemes"]
        ]
        progress.say(out.terminal_plot(series, title="dev perplexity", xlabel="step", log_y=True))
    progress.say(wrote(base, result))
    return result


def cmd_models(args, extra: dict, progress: Progress) -> dict:
    """ablation | architectures: run (or finish) the runs, score them, write the table and the plot."""
    from core.experiments import architectures
    from core.experiments.architectures import experiment, pending

    minutes = args.budget_minutes or (30.0 if args.command == "architectures" else 10.0)
    budget = Budget(args.budget_steps, None if args.budget_steps else minutes)
    if args.command == "architectures" and args.budget_steps:
        raise PoemError("architectures: the budget is time (--budget-minutes): the models differ in speed")
    args.preset = args.preset or "quantangshi"
    plan = make_plan(args, budget, extra)
    if args.dry_run:
        sys.stdout.write("\n".join(pending(plan, args.command)) + "\n")
        return {}
    result = experiment(
        args.command,
        plan,
        poems=args.poems,
        fresh=args.fresh,
        transformer_minutes=minutes,
        jobs=args.jobs,
        on_state=progress.state,
        on_event=progress.event,
    )
    result["command"] = args.command_line
    base = args.out / f"{args.command}-{slug(args.corpus)}"
    save(result, base, architectures.plot(result, base.with_suffix(".png")), architectures.markdown)
    if not args.quiet and not args.json:
        progress.say("\n" + architectures.table(result))
    progress.say(wrote(base, result))
    return result
