"""What each part of the 全唐诗 preset buys, and where an LSTM stands against a Transformer.

- ablation: the preset, and the preset with one part taken away at a time (prosody features and head,
  DropConnect on W_hh, embedding dropout, locked dropout, the tied factorised output layer), each an
  ordinary `core.train` run of the same budget, seed and data order;
- architectures: the same data and time budget for (a) the assignment's plain model at the preset's size
  (embedding -> LSTM -> linear, none of the new parts), (b) the preset, (c) a character Transformer of
  comparable size (core.experiments.transformer, a reference only).

Every run is scored the same way afterwards: test perplexity of its best checkpoint (DESIGN.md §4), the
training speed, and the rhyme rate and 格律 pass rate of pure samples (τ 1, no truncation, no penalty, no
prosody masks) whose starts and forms come from real test poems (core.generation.judge).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from core.experiments.launch import run_all
from core.experiments.optimizers import Plan, machine
from core.experiments.runs import RunSpec, experiment_dir, make_spec, run_state
from core.generation.judge_sweep import PURE

PRESET = "quantangshi"
# the parts of the preset an ablation run turns off, and the flags that do it
PARTS: dict[str, dict] = {
    "prosody": {"prosody": False},
    "weight drop": {"weight_drop": 0.0},
    "embedding dropout": {"embed_dropout": 0.0},
    "locked dropout": {"locked_dropout": False},
    "tied factorised head": {"tie_weights": False},
}
PLAIN = {key: value for flags in PARTS.values() for key, value in flags.items()}


@dataclass
class Variant:
    name: str  # "preset", "− prosody", "plain", "transformer"
    flags: dict  # core.train flags on top of the preset (none for the transformer)


def ablation_variants() -> list[Variant]:
    return [Variant("preset", {})] + [Variant(f"− {part}", flags) for part, flags in PARTS.items()]


def architecture_variants() -> list[Variant]:
    return [Variant("plain LSTM", PLAIN), Variant("preset", {}), Variant("transformer", {})]


def spec_for(plan: Plan, experiment: str, variant: Variant) -> RunSpec:
    from core.training.settings import PRESETS

    preset = PRESETS[plan.preset]
    slug = variant.name.replace("− ", "no-").replace(" ", "-")
    return make_spec(
        name=variant.name,
        optimizer=preset["optimizer"],
        lr=preset["lr"],
        run_dir=experiment_dir(plan.checkpoints, experiment, plan.corpus) / slug,
        corpus=plan.corpus,
        preset=plan.preset,
        seed=plan.seed,
        budget=plan.budget,
        eval_every=plan.eval_every,
        patience=0,
        extra={**plan.extra, **variant.flags},
        python=plan.python,
        lr_source="preset",
    )


def run_lstm_variants(plan: Plan, experiment: str, variants: list[Variant], *, fresh: bool, **hooks):
    specs = [spec_for(plan, experiment, v) for v in variants]
    rows = run_all(specs, fresh=fresh, **hooks)
    for row, spec in zip(rows, specs, strict=True):
        row["flags"] = {k: v for k, v in spec.flags.items() if k not in ("run_dir", "preset")}
    return rows, specs


def score_run(spec: RunSpec, poems: int, seed: int) -> dict:
    """Test perplexity of the run's best checkpoint, and its pure samples against real test poems."""
    from core.runs.folder import resolve_checkpoint

    path = resolve_checkpoint(spec.run_dir)
    if not path.exists():
        return {}
    from core.corpus import load_recorded_corpus
    from core.runs.checkpoint import load_checkpoint
    from core.training.perplexity import evaluate

    ckpt = load_checkpoint(path)
    corpus = load_recorded_corpus(ckpt.meta["corpus"])
    split = scored_split(corpus)
    test = [ckpt.vocab.encode(p) for p in corpus.splits[split]]
    result = evaluate(ckpt.build_model(), test)
    return {"test_ppl": result.perplexity, "scored_on": split, **pure_samples(path, poems, seed)}


def scored_split(corpus) -> str:
    """The split a run is scored on: test, or dev for a corpus without one (tang300); the results say
    which (`scored_on`)."""
    return "test" if corpus.splits["test"] else "dev"


def pure_samples(source, poems: int, seed: int) -> dict:
    """Rhyme rate, 格律 pass rate and distinct-2 of `poems` pure samples (a checkpoint path or a Judge)."""
    from core.generation.judge import Judge
    from core.generation.settings import SampleSettings

    judge = source if isinstance(source, Judge) else Judge.load(source, poems=poems, seed=seed)
    report = judge.run(SampleSettings(**PURE), discriminate=False)
    g, r = report["generated"], report["real"]
    return {
        "rhyme_rate": g["rhyme_rate"],
        "gelv_passed": g["gelv_passed"],
        "distinct_2": g["distinct_2"],
        "real_rhyme_rate": r["rhyme_rate"],
        "real_gelv_passed": r["gelv_passed"],
        "samples": report["poems"],
    }


def run_transformer(plan: Plan, experiment: str, *, minutes: float, poems: int, fresh: bool) -> dict:
    """Train the reference Transformer in this process for the budget; score it like the LSTM runs."""
    import torch

    from core.experiments.transformer import TransformerConfig, TransformerLM, train_for
    from core.generation.judge import Judge
    from core.runs.metrics import read_events
    from core.training.perplexity import evaluate
    from core.training.settings import PRESETS, TrainConfig
    from core.training.state import RunData

    run_dir = experiment_dir(plan.checkpoints, experiment, plan.corpus) / "transformer"
    cfg = TrainConfig.from_dict({**PRESETS[plan.preset], "corpus": plan.corpus, "seed": plan.seed})
    data = RunData.load(cfg)
    torch.manual_seed(plan.seed)
    model = TransformerLM(TransformerConfig(vocab_size=len(data.vocab)))
    from core.corpus import batches_for_mode

    def batches_for(epoch: int):
        return batches_for_mode(
            data.train_ids, cfg.seq_mode, cfg.batch_size, cfg.seq_len, seed=cfg.seed, epoch=epoch
        )

    from core.model import resolve_precision

    precision = resolve_precision(cfg.precision, torch.device("cpu"))  # the LSTM runs' (the preset's)
    done = train_for(
        model, batches_for, data.dev_ids, run_dir, minutes=minutes, seed=plan.seed, precision=precision
    )
    split = scored_split(data.corpus)
    test = [data.vocab.encode(p) for p in data.corpus.splits[split]]
    judge = Judge.for_model(model, data.vocab, data.corpus, poems=poems, seed=plan.seed)
    events = read_events(run_dir)
    curve = [
        {"step": e["step"], "elapsed_s": e["elapsed_s"], "dev_ppl": e["dev_ppl"]}
        for e in events
        if e["event"] == "eval"
    ]
    return {
        "name": "transformer",
        "run_dir": str(run_dir),
        "status": done["status"],
        "steps": done["step"],
        "elapsed_s": done["elapsed_s"],
        "tokens_per_s": done["tokens_per_s"],
        "precision": precision,
        "best_dev_ppl": done["best_dev_ppl"],
        "curve": curve,
        "parameters": model.parameters_without_embeddings(),
        "test_ppl": evaluate(model, test).perplexity,
        "scored_on": split,
        **pure_samples(judge, poems, plan.seed),
    }


def lstm_parameters(flags: dict, vocab_size: int) -> int:
    """Parameters of a PoetryLM of the preset with these flags, embeddings and output layer excluded."""
    from core.training.settings import PRESETS, TrainConfig

    cfg = TrainConfig.from_dict({**PRESETS[PRESET], **flags}).model_config(vocab_size)
    skip = ("embedding.weight", "head.weight", "head.bias")
    return sum(_numel(shape) for name, shape in cfg.parameter_shapes().items() if name not in skip)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def experiment(
    name: str, plan: Plan, *, poems: int, fresh: bool, transformer_minutes: float | None = None, **hooks
) -> dict:
    """Run (or finish) the runs of `name` ("ablation" or "architectures"), then score each."""
    variants = ablation_variants() if name == "ablation" else architecture_variants()
    lstm = [v for v in variants if v.name != "transformer"]
    rows, specs = run_lstm_variants(plan, name, lstm, fresh=fresh, **hooks)
    vocab_size = plan.vocab_size()
    for row, spec, variant in zip(rows, specs, lstm, strict=True):
        row.update(score_run(spec, poems, plan.seed))
        row["parameters"] = lstm_parameters(variant.flags, vocab_size)
    if any(v.name == "transformer" for v in variants):
        minutes = transformer_minutes or plan.budget.minutes
        rows.append(run_transformer(plan, name, minutes=minutes, poems=poems, fresh=fresh))
    base = next((r for r in rows if r["name"] == "preset"), None)
    for row in rows:
        if base and row.get("test_ppl") and base.get("test_ppl"):
            row["test_ppl_vs_preset"] = row["test_ppl"] - base["test_ppl"]
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    return {
        "experiment": name,
        "corpus": plan.corpus,
        "preset": plan.preset,
        "seed": plan.seed,
        "budget": plan.budget.to_dict(),
        "samples_per_run": poems,
        "runs_dir": str(experiment_dir(plan.checkpoints, name, plan.corpus)),
        "runs": rows,
        "median_tokens_per_s": statistics.median(speeds) if speeds else None,
        "machine": machine(),
    }


def pending(plan: Plan, name: str) -> list[str]:
    """The LSTM runs of the experiment not finished yet (for --dry-run)."""
    variants = ablation_variants() if name == "ablation" else architecture_variants()
    out = []
    for v in variants:
        if v.name == "transformer":
            out.append("transformer (in-process)")
            continue
        spec = spec_for(plan, name, v)
        out.append(f"{v.name}: {run_state(spec)}")
    return out


# --- what the experiment leaves behind ---------------------------------------------------------------------


def table(result: dict) -> str:
    """The Markdown table of the runs (also what the terminal shows)."""
    from core.experiments.results import fmt, markdown_table

    dev_only = any(r.get("scored_on") == "dev" for r in result["runs"])
    header = [
        "run",
        "dev ppl (no test split)" if dev_only else "test ppl",
        "Δ vs preset",
        "best dev ppl",
        "tokens/s",
        "steps",
        "minutes",
        "parameters (no embeddings)",
        "rhyme rate (pure samples)",
        "格律 pass",
        "distinct-2",
    ]
    rows = []
    for r in result["runs"]:
        delta = r.get("test_ppl_vs_preset")
        rows.append(
            [
                r["name"],
                fmt(r.get("test_ppl")),
                "" if delta is None or r["name"] == "preset" else f"{delta:+.2f}",
                fmt(r.get("best_dev_ppl")),
                fmt(r.get("tokens_per_s"), 0),
                fmt(r.get("steps")),
                fmt((r.get("elapsed_s") or 0) / 60, 1),
                fmt(r.get("parameters")),
                _pct(r.get("rhyme_rate")),
                _pct(r.get("gelv_passed")),
                fmt(r.get("distinct_2"), 3),
            ]
        )
    return markdown_table(header, rows)


def markdown(result: dict) -> str:
    real = next((r for r in result["runs"] if r.get("real_rhyme_rate") is not None), {})
    budget = result["budget"]
    spent = f"{budget['minutes']:g} minutes" if budget.get("minutes") else f"{budget['steps']} steps"
    return (
        f"# {result['experiment']} on {result['corpus']} ({spent} per run, seed {result['seed']})\n\n"
        f"`{result.get('command', '')}`\n\n"
        + table(result)
        + f"\n\nPure samples: {result['samples_per_run']} per run, τ 1, no top-k/top-p, no penalty, no "
        "prosody masks; starts and forms from as many real test poems, which rhyme at "
        f"{_pct(real.get('real_rhyme_rate'))} and pass 格律 at {_pct(real.get('real_gelv_passed'))}. "
        f"Machine: {result['machine']['device']}, {result['machine']['torch_threads']} threads.\n"
    )


def plot(result: dict, path) -> str | None:
    """Dev perplexity against minutes of training, one line per run (log y); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for r in result["runs"]:
        points = r.get("curve") or []
        if points:
            ax.plot([p["elapsed_s"] / 60 for p in points], [p["dev_ppl"] for p in points], label=r["name"])
    ax.set_yscale("log")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("dev perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{result['experiment']}: dev perplexity against training time ({result['corpus']})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"
