"""python -m core.bench: our LSTM against torch.nn.LSTM, same model shape, same weights, one interleaved run.

Both sides are the whole language model: embedding -> LSTM -> dropout -> linear head. Ours is
core.model.PoetryLM (core.lstm.LSTM inside, told each row's length); the reference is the same module
built around torch.nn.LSTM (oneDNN on CPU, cuDNN on GPU), fed the padded batch as torch users usually do:
it computes the padding too, and the masked loss ignores it, so both train the same model on the same
tokens. Before timing, the two are checked to agree (logits and gradients, float32).

Method (what each number means):
- batches: the poem lengths of the corpus's train split, batched as the trainer does (core.corpus
  poem_batches, bucketed by length); a few batches drawn with a fixed seed form one "unit" of work. When
  the corpus is not available, the lengths come from SYNTHETIC_LENGTHS (the quantangshi / tang300 mix).
- timing: the two sides alternate (ours, reference, reference, ours, ...), warm-up units excluded, and each
  figure is the median over --repeats units. tokens/s counts real (non-padded) target tokens only.
  --clock wall (default) times elapsed seconds; --clock cpu this process's CPU seconds, which with
  --threads 1 stays meaningful when other processes share the machine (elapsed time then measures them).
  train = forward + backward + Adam step; infer = forward in eval mode without autograd;
  recurrent = the LSTM alone, forward + backward (embedding and head are identical on both sides);
  generation = a 4x7 poem, 32 tokens one at a time with batch 1 (model steps; each fed the argmax).
- precision: fp32 (default: exact on both sides) or bf16, where train, infer and recurrent run both sides
  under a bfloat16 autocast (the trainer's `--precision bf16`): ours multiplies in bf16 and keeps its state
  in float32; nn.LSTM runs oneDNN's RNN primitive in bf16. The agreement check stays float32.
- peak_rss_mb: the peak resident set (VmHWM) of a fresh child process that holds one side's model only and
  runs two training units and one inference unit; the peak is reset (/proc/self/clear_refs) once the
  corpus is loaded and the model built, so it is baseline_rss_mb (torch, batches, model) plus the most
  that training and inference added. (Not ru_maxrss: a forked child inherits its parent's, and the corpus
  loading would dominate it.) On CUDA, peak_gpu_mb is max_memory_allocated.
- ratios are ours / reference in tokens per second (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from core.cli import ArgumentParser, print_json, run
from core.dropout import Dropout
from core.errors import PoemError
from core.memory import keep_freed_memory
from core.model import ModelConfig, PoetryLM, masked_cross_entropy

# Share of each input length (<bos> + characters) in the train split, for when the corpus cannot be loaded,
# as measured on chinese-poetry 2.0.1: 五律 49, 七绝 33, 七律 65, 五绝 25; tang300's other 12.5% are long
# 古体 poems of mean length 221.
SYNTHETIC_LENGTHS = {
    "quantangshi": {49: 0.387, 33: 0.285, 65: 0.22, 25: 0.109},
    "tang300": {
        49: 0.293,
        33: 0.207,
        65: 0.188,
        25: 0.109,
        61: 0.023,
        37: 0.023,
        145: 0.02,
        85: 0.012,
        221: 0.125,
    },
}


@dataclass(frozen=True)
class BenchConfig:
    name: str
    corpus: str
    batch_size: int
    embed_size: int
    hidden_size: int
    num_layers: int
    vocab_size: int  # used when the corpus is not available
    batches: int  # batches per timed unit
    dropout: float = 0.2
    corpus_vocab: bool = True  # False (quick): token ids folded into vocab_size, lengths still the corpus's


CONFIGS = {
    "poem": BenchConfig("poem", "quantangshi", 64, 256, 512, 2, 6000, batches=2),
    "poem-1layer": BenchConfig("poem-1layer", "quantangshi", 64, 256, 512, 1, 6000, batches=2),
    "tang300": BenchConfig("tang300", "tang300", 30, 256, 256, 2, 2342, batches=4),
}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
GROUPS = {"poem": ["poem", "poem-1layer"], "tang300": ["tang300"], "all": list(CONFIGS)}


def quick(cfg: BenchConfig) -> BenchConfig:
    """Tiny sizes, for tests: the same code paths in a fraction of a second."""
    return replace(
        cfg, batch_size=4, embed_size=16, hidden_size=24, vocab_size=50, batches=1, corpus_vocab=False
    )


# --- the two models -------------------------------------------------------------------------------------


class ReferenceLM(nn.Module):
    """PoetryLM's shape around torch.nn.LSTM: embedding -> dropout -> nn.LSTM -> dropout -> head. Only the
    LSTM differs: the embedding, the head and the dropout around the LSTM are PoetryLM's (core.dropout);
    between its layers nn.LSTM drops units its own way."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        between_layers = cfg.dropout if cfg.num_layers > 1 else 0.0  # nn.LSTM warns otherwise; same model
        self.lstm = nn.LSTM(
            cfg.embed_size, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=between_layers
        )
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, inputs, lengths=None, state=None):
        """lengths are ignored: the padded positions are computed and the masked loss ignores them."""
        out, state = self.lstm(self.drop(self.embedding(inputs)), state)
        return self.head(self.drop(out)), state


def build_pair(cfg: BenchConfig, vocab_size: int, device) -> tuple[PoetryLM, ReferenceLM]:
    """Our model and the reference holding the same weights (nn.LSTM's two biases: ours and zero)."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(
        vocab_size=vocab_size,
        embed_size=cfg.embed_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        dropout=cfg.dropout,
        lstm_impl="fused",
    )
    ours = PoetryLM(model_cfg)
    ref = ReferenceLM(model_cfg)
    with torch.no_grad():
        ref.embedding.weight.copy_(ours.embedding.weight)
        ref.head.weight.copy_(ours.head.weight)
        ref.head.bias.copy_(ours.head.bias)
        for k in range(cfg.num_layers):
            w_ih, w_hh, b = ours.lstm.layer_weights(k)
            getattr(ref.lstm, f"weight_ih_l{k}").copy_(w_ih)
            getattr(ref.lstm, f"weight_hh_l{k}").copy_(w_hh)
            getattr(ref.lstm, f"bias_ih_l{k}").copy_(b)
            getattr(ref.lstm, f"bias_hh_l{k}").zero_()
    return ours.to(device), ref.to(device)


# --- the work --------------------------------------------------------------------------------------------


def load_batches(cfg: BenchConfig, device) -> tuple[list, int, str]:
    """A unit of batches with the corpus's lengths, the vocabulary size, and where the lengths came from."""
    from core.corpus import Batch, load_corpus, poem_batches
    from core.corpus.buckets import plan_poem_batches

    rng = random.Random(f"bench:{cfg.name}")
    try:
        corpus = load_corpus(cfg.corpus)
    except Exception as exc:  # the corpus is optional here: fall back to its known length mix
        source = f"synthetic {cfg.corpus} length mix (corpus not available: {type(exc).__name__})"
        mix = SYNTHETIC_LENGTHS[cfg.corpus]
        lengths = rng.choices(list(mix), weights=list(mix.values()), k=cfg.batch_size * cfg.batches)
        encoded = [[rng.randrange(4, cfg.vocab_size) for _ in range(n - 1)] for n in lengths]
        batches = poem_batches(encoded, cfg.batch_size, seed=0, epoch=0, shuffle=False)  # sorted by length
        vocab_size = cfg.vocab_size
    else:
        vocab = corpus.build_vocab()
        source = f"{corpus.name} train split, batched as the trainer does (bucketed by length)"
        poems = corpus.splits["train"]
        plan = plan_poem_batches([len(p) for p in poems], cfg.batch_size, seed=0, epoch=0)
        full = [rows for rows in plan if len(rows) == cfg.batch_size] or plan
        chosen = rng.sample(full, min(cfg.batches, len(full)))
        encoded = [vocab.encode(poems[i]) for rows in chosen for i in rows]
        batches = poem_batches(encoded, cfg.batch_size, seed=0, epoch=0, shuffle=False, bucket=False)
        vocab_size = len(vocab)
    if not cfg.corpus_vocab:
        fold = lambda ids: ids % cfg.vocab_size  # noqa: E731
        batches = [Batch(fold(b.inputs), fold(b.targets), b.mask, b.lengths, b.tokens) for b in batches]
        vocab_size = cfg.vocab_size
    return [b.to(device) for b in batches], vocab_size, source


def train_unit(model, optimizer, batches, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    """amp: the autocast each forward pass runs under (a fresh one per step, as the trainer does: within one
    autocast region the bf16 copies of the weights are cached and would miss the optimizer's updates)."""
    for batch in batches:
        with amp():
            logits, _ = model(batch.inputs, lengths=batch.lengths if uses_lengths else None)
        masked_cross_entropy(logits, batch.targets, batch.mask).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def infer_unit(model, batches, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    with torch.no_grad(), amp():
        for batch in batches:
            model(batch.inputs, lengths=batch.lengths if uses_lengths else None)


def recurrent_unit(lstm, inputs, uses_lengths: bool, amp=contextlib.nullcontext) -> None:
    """The LSTM alone: forward + backward of a fixed linear function of the real outputs."""
    for x, lengths, weight in inputs:
        with amp():
            out, _ = lstm(x, lengths=lengths) if uses_lengths else lstm(x)
        (out * weight).sum().backward()


def generation_unit(model, tokens: int = 32) -> None:
    """One 4x7 poem's worth of model steps: batch 1, one token at a time, each fed the previous step's
    most likely token (the sampler proper is core.sample's; this times the model)."""
    token = torch.ones(1, 1, dtype=torch.long, device=next(model.parameters()).device)  # <bos>
    state = None
    with torch.no_grad():
        for _ in range(tokens):
            logits, state = model(token, state=state)
            token = logits[:, -1].argmax(-1, keepdim=True)


def recurrent_inputs(model: PoetryLM, batches) -> list:
    """The embedded batches (inputs to the LSTM) and a fixed weight that ignores padded outputs."""
    torch.manual_seed(1)
    H = model.cfg.hidden_size
    with torch.no_grad():
        embedded = [model.embedding(b.inputs) for b in batches]
    return [
        (x.requires_grad_(), b.lengths, torch.randn(*b.inputs.shape, H, device=x.device) * b.mask[..., None])
        for x, b in zip(embedded, batches, strict=True)
    ]


# --- agreement -------------------------------------------------------------------------------------------


def agreement(ours: PoetryLM, ref: ReferenceLM, batch) -> dict:
    """Logits on real positions and every gradient of the masked loss, ours against the reference."""
    ours.eval(), ref.eval()
    grads = {}
    logits = {}
    for side, model in (("ours", ours), ("reference", ref)):
        model.zero_grad(set_to_none=True)
        out, _ = model(batch.inputs, lengths=batch.lengths)
        masked_cross_entropy(out, batch.targets, batch.mask).backward()
        logits[side] = out.detach()[batch.mask]
        grads[side] = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
    ours.train(), ref.train()
    scale = max(1.0, logits["reference"].abs().max().item())
    logit_error = (logits["ours"] - logits["reference"]).abs().max().item() / scale
    grad_error = 0.0
    for name, g in grads["ours"].items():
        expected = grads["reference"][name.replace("bias_l", "bias_ih_l")]
        grad_error = max(
            grad_error, ((g - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
        )
    return {
        "max_logit_error": logit_error,
        "max_grad_rel_error": grad_error,
        "passed": logit_error <= 1e-4 and grad_error <= 1e-3,
        "tolerance": {"logits": 1e-4, "grads": 1e-3},
    }


# --- timing ----------------------------------------------------------------------------------------------


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(tasks: dict, repeats: int, warmup: int, device, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds of each task, the tasks taking turns (order reversed every round), warm-up excluded."""
    times = {name: [] for name in tasks}
    names = list(tasks)
    for round_ in range(warmup + repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            sync(device)
            start = clock()
            tasks[name]()
            sync(device)
            if round_ >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def autocast(device, precision: str):
    """The autocast the timed forward passes run under (see the module docstring)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def measure(cfg: BenchConfig, repeats: int, device, clock=time.perf_counter, precision: str = "fp32") -> dict:
    batches, vocab_size, source = load_batches(cfg, device)
    ours, ref = build_pair(cfg, vocab_size, device)
    checked = agreement(ours, ref, batches[0])
    tokens = sum(b.tokens for b in batches)
    positions = sum(b.inputs.numel() for b in batches)
    models = {"ours": (ours, True), "reference": (ref, False)}
    optimizers = {side: torch.optim.Adam(m.parameters(), lr=1e-3) for side, (m, _) in models.items()}
    rec_inputs = recurrent_inputs(ours, batches)
    timed = functools.partial(interleaved, repeats=repeats, warmup=2, device=device, clock=clock)
    amp = functools.partial(autocast, device, precision)

    train = timed(
        {s: lambda s=s: train_unit(models[s][0], optimizers[s], batches, models[s][1], amp) for s in models}
    )
    recurrent = timed(
        {s: lambda s=s: recurrent_unit(models[s][0].lstm, rec_inputs, models[s][1], amp) for s in models}
    )
    for model, _ in models.values():
        model.eval()
    infer = timed({s: lambda s=s: infer_unit(models[s][0], batches, models[s][1], amp) for s in models})
    generation = timed({s: lambda s=s: generation_unit(models[s][0]) for s in models})  # float32
    sides = {
        side: {
            "train_tokens_per_s": tokens / train[side],
            "infer_tokens_per_s": tokens / infer[side],
            "recurrent_train_tokens_per_s": tokens / recurrent[side],
            "generation_ms_per_poem": generation[side] * 1000,
        }
        for side in models
    }
    return {
        "batch_size": cfg.batch_size,
        "embed_size": cfg.embed_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "vocab_size": vocab_size,
        "dropout": ours.cfg.dropout,
        "precision": precision,
        "lengths": source,
        "batches_per_unit": len(batches),
        "tokens_per_unit": tokens,
        "padding_fraction": round(1 - tokens / positions, 4),
        "agreement": checked,
        **sides,
        "train_ratio": sides["ours"]["train_tokens_per_s"] / sides["reference"]["train_tokens_per_s"],
        "infer_ratio": sides["ours"]["infer_tokens_per_s"] / sides["reference"]["infer_tokens_per_s"],
        "recurrent_train_ratio": (
            sides["ours"]["recurrent_train_tokens_per_s"] / sides["reference"]["recurrent_train_tokens_per_s"]
        ),
        "generation_ratio": generation["reference"] / generation["ours"],
    }


# --- peak memory, one side per fresh process ---------------------------------------------------------------


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its peak (VmHWM), from /proc; ru_maxrss without /proc."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0), so that loading the corpus does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child_memory(cfg: BenchConfig, side: str, device, precision: str = "fp32") -> dict:
    """Run in a fresh process: one side's training and inference units, then its peak RSS."""
    batches, vocab_size, _ = load_batches(cfg, device)
    ours, ref = build_pair(cfg, vocab_size, device)
    model, uses_lengths = (ours, True) if side == "ours" else (ref, False)
    del ours, ref
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # imports what the step needs
    gc.collect()
    baseline = rss_mb()
    reset_peak_rss()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    amp = functools.partial(autocast, device, precision)
    for _ in range(2):
        train_unit(model, optimizer, batches, uses_lengths, amp)
    model.eval()
    infer_unit(model, batches, uses_lengths, amp)
    sync(device)
    result = {"peak_rss_mb": rss_mb("VmHWM"), "baseline_rss_mb": baseline}
    if torch.device(device).type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def memory_in_children(name: str, args) -> dict[str, dict]:
    """Both sides' children at once: memory does not depend on sharing the CPU."""
    children = {}
    for side in ("ours", "reference"):
        cmd = [
            sys.executable,
            "-m",
            "core.bench",
            "--child-memory",
            side,
            "--config",
            name,
            "--device",
            args.device,
            "--precision",
            args.precision,
        ]
        cmd += ["--threads", str(torch.get_num_threads())] + (["--quick"] if args.quick else [])
        children[side] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for side, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"memory child for {side} failed: {stderr.strip()[-500:]}")
        out[side] = json.loads(stdout)
    return out


# --- command line ----------------------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m core.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=[*GROUPS, "poem-1layer"], default="all", help="which configurations")
    p.add_argument("--repeats", type=int, default=None, help="timed units per side and measure (median; 10)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: both sides train and infer under a bfloat16 autocast (agreement is checked in fp32)",
    )
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a busy machine; use --threads 1)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--child-memory", choices=["ours", "reference"], help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.repeats < 1:
        raise PoemError("--repeats must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PoemError("--device cuda: no CUDA device is available")
    kept = keep_freed_memory()  # as core.train does (core/memory.py); both sides profit
    if args.threads or args.quick:  # quick: one thread, steadier on a busy machine
        torch.set_num_threads(args.threads or 1)
    names = GROUPS.get(args.config, [args.config])
    configs = {n: quick(CONFIGS[n]) if args.quick else CONFIGS[n] for n in names}

    if args.child_memory:
        print_json(child_memory(configs[names[0]], args.child_memory, args.device, args.precision))
        return 0

    from core.lstm import compiled_loops
    from core.matmul import onednn_works

    results = {}
    for name, cfg in configs.items():
        results[name] = measure(cfg, args.repeats, args.device, CLOCKS[args.clock], args.precision)
        for side, mem in memory_in_children(name, args).items():
            results[name][side].update(mem)
    main_cfg = results[names[0]]
    report = {
        "ours": main_cfg["ours"],
        "reference": main_cfg["reference"],
        "train_ratio": main_cfg["train_ratio"],
        "infer_ratio": main_cfg["infer_ratio"],
        "recurrent_train_ratio": main_cfg["recurrent_train_ratio"],
        "generation_ratio": main_cfg["generation_ratio"],
        "agreement_passed": all(r["agreement"]["passed"] for r in results.values()),
        "main_config": names[0],
        "configs": results,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "precision": args.precision,
        "gemm": "oneDNN" if args.device == "cpu" and onednn_works() else "torch",
        "lstm_loops": "python" if compiled_loops(args.device, torch.float32) is None else "compiled",
        "malloc_keeps_freed_memory": kept,
        "repeats": args.repeats,
        "clock": args.clock,
        "quick": args.quick,
    }
    if args.json:
        print_json(report)
    else:
        print_table(report)
    return 0 if report["agreement_passed"] else 1


def print_table(report: dict) -> None:
    w = sys.stderr.write
    w(f"torch {report['torch']}, {report['threads']} threads, {report['device']}, {report['precision']},"
      f" GEMM: {report['gemm']}, our loops: {report['lstm_loops']},"
      f" malloc keeps freed memory: {'yes' if report['malloc_keeps_freed_memory'] else 'no'}\n")  # fmt: skip
    w(f"{'config':<12} {'':>10} {'train tok/s':>12} {'infer tok/s':>12} {'LSTM tok/s':>11} {'gen ms':>8}"
      f" {'peak MB':>8}\n")  # fmt: skip
    for name, r in report["configs"].items():
        for side in ("ours", "reference"):
            s = r[side]
            w(f"{name if side == 'ours' else '':<12} {side:>10} {s['train_tokens_per_s']:>12.0f}"
              f" {s['infer_tokens_per_s']:>12.0f} {s['recurrent_train_tokens_per_s']:>11.0f}"
              f" {s['generation_ms_per_poem']:>8.1f} {s['peak_rss_mb']:>8.0f}\n")  # fmt: skip
        w(f"{'':<12} {'ratio':>10} {r['train_ratio']:>12.2f} {r['infer_ratio']:>12.2f}"
          f" {r['recurrent_train_ratio']:>11.2f} {r['generation_ratio']:>8.2f}"
          f"   agree: {'yes' if r['agreement']['passed'] else 'NO'}\n")  # fmt: skip


if __name__ == "__main__":
    run(main)
