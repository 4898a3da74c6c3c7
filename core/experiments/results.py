"""What an experiment leaves behind: a JSON file of every number, a Markdown table, a PNG and a terminal plot.

matplotlib is optional (not a dependency): without it the PNG is skipped with a note. The terminal plot
uses plotext (installed with textual-plotext) and goes to stderr.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

MISSING = "–"


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def fmt_lr(x: float) -> str:
    return format(x, "g")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- optimizers and the learning-rate sweep --------------------------------------------------------------


def runs_table(rows: list[dict]) -> str:
    header = [
        "optimizer",
        "lr",
        "best dev ppl",
        "step of best",
        "steps",
        "wall time (s)",
        "tokens/s",
        "status",
    ]
    body = [
        [
            r["optimizer"],
            fmt_lr(r["lr"]),
            fmt(r["best_dev_ppl"]),
            fmt(r["best_step"]),
            fmt(r["steps"]),
            fmt(r["elapsed_s"], 0),
            fmt(r["tokens_per_s"], 0),
            r["status"] + (f" ({r['message']})" if r.get("message") else ""),
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def sweep_table(sweep: dict) -> str:
    """One row per optimizer: the best dev ppl at each lr of its grid, the chosen lr in bold."""
    header = ["optimizer", "lr → best dev ppl (short budget)", "chosen lr"]
    body = []
    for opt, entry in sweep["optimizers"].items():
        cells = []
        for r in entry["runs"]:
            text = f"{fmt_lr(r['lr'])}: {fmt(r['best_dev_ppl'])}"
            cells.append(f"**{text}**" if r["lr"] == entry.get("chosen_lr") else text)
        chosen = fmt_lr(entry["chosen_lr"]) if entry.get("chosen_lr") is not None else MISSING
        if entry.get("at_edge"):
            chosen += " (still at an end of what was tried)"
        body.append([opt, "; ".join(cells), chosen])
    return markdown_table(header, body)


def sweep_markdown(sweep: dict) -> str:
    b = sweep["budget"]
    return "\n".join(
        [
            f"# Learning-rate sweep on {sweep['corpus']}",
            "",
            f"Preset `{sweep['preset']}`, seed {sweep['seed']}, budget {budget_text(b)} per run; "
            "the lr with the lowest dev perplexity is chosen (ties: the smaller lr). The grid has three "
            "values a factor ~3 apart around each optimizer's customary lr; when the winner is at an end, "
            "the grid is extended by the same factor in that direction (at most twice).",
            "",
            sweep_table(sweep),
            "",
            "Commands:",
            "",
            *sorted({f"    {e.get('command', sweep['command'])}" for e in sweep["optimizers"].values()}),
            "",
        ]
    )


def budget_text(b: dict) -> str:
    parts = []
    if b.get("steps"):
        parts.append(f"{b['steps']} steps")
    if b.get("minutes"):
        parts.append(f"{b['minutes']:g} minutes")
    return " or ".join(parts)


def optimizers_markdown(result: dict) -> str:
    settings = result["settings"]
    lines = [
        f"# Optimizers compared on {result['corpus']}",
        "",
        f"The same model (preset `{result['preset']}`: |V| {result.get('vocab_size', '?')}, "
        f"{model_text(settings)}), the same seed "
        f"({result['seed']}) and so the same initial weights and batch order; each optimizer trains for "
        f"{budget_text(result['budget'])} with the learning rate given below ({lr_note(result)}). "
        "Dev perplexity as in DESIGN.md §4 (whole dev split); tokens/s is the median training speed; "
        "wall time includes evaluations. "
        + (
            f"Early stopping with patience {settings['patience']}"
            if settings.get("patience")
            else "No early stopping"
        )
        + "; "
        + schedule_text(settings),
        "",
        runs_table(result["runs"]),
        "",
    ]
    if result.get("plot"):
        lines += [f"![dev perplexity against step and time]({Path(result['plot']).name})", ""]
    elif result.get("plot_note"):
        lines += [f"({result['plot_note']})", ""]
    if result.get("sweep"):
        lines += ["## Learning-rate sweep", "", sweep_table(result["sweep"]), ""]
        lines += [f"Budget of each sweep run: {budget_text(result['sweep']['budget'])}.", ""]
    lines += [
        f"Machine: {result['machine']['device']}, torch {result['machine']['torch']}, "
        f"{result['machine']['cpus']} CPUs. Runs: `{result['runs_dir']}`.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    return "\n".join(lines)


def schedule_text(s: dict) -> str:
    if s.get("lr_factor", 1.0) >= 1.0 or s.get("lr_patience", 0) >= 1000:
        return "a constant learning rate (the trainer's ReduceLROnPlateau is off: --lr-patience 1000000)."
    return (
        f"the lr is multiplied by {s['lr_factor']} after {s['lr_patience'] + 1} evaluation(s) without a "
        "better dev loss (ReduceLROnPlateau)."
    )


def model_text(s: dict) -> str:
    return (
        f"embedding {s['embed_size']}, hidden {s['hidden_size']}, {s['num_layers']} layer(s), "
        f"dropout {s['dropout']}, batch {s['batch_size']}, clip {s['clip']}"
    )


LR_SOURCES = {
    "sweep": "chosen by the sweep below",
    "given": "given on the command line",
    "default": "core.training.trainer.DEFAULT_LR",
}


def lr_note(result: dict) -> str:
    sources = sorted({r["lr_source"] for r in result["runs"]})
    text = "; ".join(LR_SOURCES.get(s, s) for s in sources)
    return text if len(sources) == 1 else text + " (each run's lr_source is in the JSON)"


def plot_curves(rows: list[dict], path: Path, title: str) -> str | None:
    """Dev perplexity against step and against wall time (log y), two panels; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for r in rows:
        if not r["curve"]:
            continue
        label = f"{r['optimizer']} (lr {fmt_lr(r['lr'])})"
        steps = [p["step"] for p in r["curve"]]
        times = [p["elapsed_s"] for p in r["curve"]]
        ppl = [p["dev_ppl"] for p in r["curve"]]
        (line,) = by_step.plot(steps, ppl, marker=".", label=label)
        by_time.plot(times, ppl, marker=".", color=line.get_color(), label=label)
    for ax, xlabel in ((by_step, "optimizer step"), (by_time, "wall time (s)")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("dev perplexity")
        ax.grid(True, which="both", alpha=0.3)
    by_step.legend(fontsize=8)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


# --- the initialisation experiment -----------------------------------------------------------------------


def init_table(result: dict) -> str:
    header = [
        "init",
        "train-split loss at the end",
        "dev ppl: start → best (step) → end",
        "max \\|h_j − h_k\\|",
        "max gradient-row difference",
        "distinct hidden units",
        "‖grad‖ except head.bias",
    ]
    H = result["settings"]["hidden_size"]
    body = [
        [
            s["scheme"],
            fmt(s["train_split_loss_end"], 3),
            f"{fmt(s['dev_ppl_start'], 1)} → {fmt(s['best_dev_ppl'], 1)} ({s['best_dev_step']}) → "
            f"{fmt(s['dev_ppl_end'], 1)}",
            f"{s['max_activation_spread']:.3g}",
            f"{s['max_grad_row_spread']:.3g}",
            f"{s['min_distinct_units']} of {H}",
            f"{s['max_grad_norm_but_head_bias']:.3g}",
        ]
        for s in result["summary"]
    ]
    return markdown_table(header, body)


def init_markdown(result: dict) -> str:
    st = result["settings"]
    lines = [
        f"# Why not initialise with zeros ({result['corpus']})",
        "",
        f"One small model (embedding {st['embed_size']}, hidden {st['hidden_size']}, "
        f"{st['num_layers']} layers, dropout {st['dropout']}, {st['optimizer']} lr {fmt_lr(st['lr'])}, "
        f"batch {st['batch_size']}, clip {st['clip']}) trained {st['steps']} steps from each initialisation "
        f"on the same batches (seed {st['seed']}). Measured at steps "
        f"{', '.join(map(str, result['record_steps']))}: the train loss (mean over the steps since the "
        "previous measurement; in the JSON and the plot), the dev perplexity (whole dev split), and on "
        "a fixed batch of "
        f"{st['probe_poems']} dev poems the largest difference between two hidden units' activations "
        "(max over positions and units j, k of |h_j − h_k|, any layer; at most 2), the largest difference "
        "between the gradient rows of two hidden units within one gate block of weight_ih, weight_hh and "
        "bias, and the number of distinct hidden units (columns of h compared exactly) at the end.",
        "",
        init_table(result),
        "",
        f"Unigram entropy of the train characters: {result['unigram_entropy']:.3f} nats "
        f"(perplexity {result['unigram_ppl']:.1f}), the lowest loss on the train split a model without "
        f"context can reach (the table's train-split loss is measured once, after the last step). "
        f"An add-one unigram model of train scores dev perplexity {result['unigram_dev_ppl']:.1f}.",
        "",
    ]
    if result.get("plot"):
        lines += [f"![loss, dev perplexity and hidden-unit differences]({Path(result['plot']).name})", ""]
    elif result.get("plot_note"):
        lines += [f"({result['plot_note']})", ""]
    lines += ["## What this shows", "", *init_explanation(result), ""]
    lines += [f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def init_explanation(result: dict) -> list[str]:
    summary = {s["scheme"]: s for s in result["summary"]}
    zeros = summary.get("zeros")
    if zeros is None:
        return ["(zeros was not among the schemes run)"]
    H = result["unigram_entropy"]
    others = [s for name, s in summary.items() if name != "zeros"]
    lines = [
        "With every weight zero, every pre-activation is 0, so i = f = o = ½ and C̄ = 0: the cell and h",
        "stay exactly 0 in every layer, and the logits are head.bias whatever the input",
        "(docs/lstm-derivatives.md §10). The gradient of head.weight is Σ g_t h_tᵀ = 0 and δh = W_yᵀ g = 0,",
        "so every LSTM and embedding gradient is exactly 0 too: the activation and gradient-row differences",
        "above are exactly 0, the hidden units are all one unit, and nothing but head.bias ever gets a",
        "gradient. head.bias alone learns the unigram distribution: zero init's train loss falls",
        f"towards the unigram entropy ({H:.2f} nats; at the end, over the train split, "
        f"{fmt(zeros['train_split_loss_end'], 2)}) and can go no lower.",
    ]
    if others:
        below = [s for s in others if s["train_split_loss_end"] < H]
        losses = ", ".join(f"{s['scheme']} {fmt(s['train_split_loss_end'], 2)}" for s in others)
        verdict = (
            "its train-split loss goes below the unigram entropy"
            if len(below) == len(others)
            else "given enough steps its train-split loss goes below the unigram entropy"
        )
        lines += [
            "Every random scheme breaks the symmetry from step 0 (all units distinct) and uses the",
            f"context: {verdict} ({losses}).",
            f"On a corpus as small as {result['corpus']} such a model without dropout also over-fits",
            "quickly, so its dev perplexity is best early (see the table) and then rises; dropout and",
            "early stopping handle that, not the initialisation.",
            "Use small random weights scaled to the layer: Xavier input weights, orthogonal recurrent",
            "weights and a forget-gate bias of 1 (`--init default`); torch's uniform ±1/√H or plain",
            "Xavier also learn.",
        ]
    return lines


def plot_init(result: dict, path: Path) -> str | None:
    """Against step: train loss (and the unigram entropy), dev ppl, activation and gradient-row spread."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    (loss_ax, ppl_ax), (act_ax, grad_ax) = axes
    for s in result["schemes"]:
        rec = s["records"]
        steps = [r["step"] for r in rec]
        (line,) = loss_ax.plot(
            [r["step"] for r in rec if r["train_loss"] is not None],
            [r["train_loss"] for r in rec if r["train_loss"] is not None],
            marker=".",
            label=s["scheme"],
        )
        color = line.get_color()
        ppl_ax.plot(steps, [r["dev_ppl"] for r in rec], marker=".", color=color, label=s["scheme"])
        act_ax.plot(
            steps, [max(ly["activation_spread"] for ly in r["layers"]) for r in rec], ".-", color=color
        )
        grad_ax.plot(
            steps, [max(ly["grad_row_spread"] for ly in r["layers"]) for r in rec], ".-", color=color
        )
    loss_ax.axhline(result["unigram_entropy"], color="gray", linestyle="--", label="unigram entropy")
    loss_ax.set_ylabel("train loss (nats)")
    ppl_ax.set_yscale("log")
    ppl_ax.set_ylabel("dev perplexity")
    act_ax.set_ylabel("max |h_j − h_k| on a fixed batch")
    grad_ax.set_ylabel("max gradient-row difference")
    for ax in (act_ax, grad_ax):
        ax.set_yscale("symlog", linthresh=1e-6)  # shows the exact zeros of zero initialisation
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
    loss_ax.legend(fontsize=8)
    fig.suptitle(f"Initialisation schemes on {result['corpus']}: zeros never break the symmetry")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


# --- terminal plots --------------------------------------------------------------------------------------


def terminal_plot(
    series: list[tuple[str, list[float], list[float]]], *, title: str, xlabel: str, log_y: bool
) -> str:
    """A plotext line chart as text ("" when plotext is missing); colours only for a terminal."""
    try:
        import plotext as plt
    except ImportError:
        return ""
    import sys

    plt.clear_figure()
    plt.plotsize(min(os.get_terminal_size(2).columns if sys.stderr.isatty() else 100, 120), 22)
    plain = not sys.stderr.isatty()
    if plain:
        plt.theme("clear")
    for label, xs, ys in series:
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y) and y > 0]
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], label=label)
    if log_y:
        plt.yscale("log")
    plt.title(title)
    plt.xlabel(xlabel)
    text = plt.build()
    plt.clear_figure()
    return plt.uncolorize(text) if plain else text
