"""Why not initialise with zeros: the same small model trained from each initialisation scheme, measured.

With every weight zero, every hidden unit computes the same value and receives the same gradient
(docs/lstm-derivatives.md §10), so the H units of a layer stay one unit; worse, h = 0 and W_y = 0 make every
gradient but head.bias's exactly 0, so the model can only learn the unigram distribution of characters.
This module shows it numerically on the real corpus: for each scheme, at several steps, the train loss, the
dev perplexity, and on a fixed batch the largest difference between two hidden units' activations and
between two hidden units' gradient rows, and how many distinct hidden units there are.

Everything runs in-process (a small model, a few hundred steps, the same batches for every scheme).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from core.corpus import load_corpus, poem_batches
from core.lstm import LSTM
from core.model import INIT_SCHEMES, ModelConfig, PoetryLM
from core.training.backends import make_torch_optimizer
from core.training.perplexity import evaluate

SCHEMES = ("zeros", "default", "uniform", "xavier")
FORMAT = 2  # of a scheme's cached result; older ones are computed again


@dataclass
class InitSettings:
    corpus: str = "tang300"
    schemes: tuple[str, ...] = SCHEMES
    steps: int = 400  # enough for zero init's head.bias to reach the unigram plateau at lr 1e-2
    embed_size: int = 64
    hidden_size: int = 64
    num_layers: int = 2
    batch_size: int = 30
    optimizer: str = "adam"
    lr: float = 1e-2
    dropout: float = 0.0  # none: nothing but the initialisation breaks the symmetry (zeros: h = 0 anyway)
    clip: float = 1.0
    seed: int = 2019
    probe_poems: int = 16  # the fixed batch (the first dev poems) on which symmetry is measured
    device: str = "cpu"

    def to_dict(self) -> dict:
        return {**asdict(self), "schemes": list(self.schemes)}

    def per_scheme(self) -> dict:
        """What one scheme's result depends on (everything but the list of schemes)."""
        d = self.to_dict()
        d.pop("schemes")
        return d


def record_steps(steps: int) -> list[int]:
    """Log-spaced early (where zero init's loss falls to the unigram entropy), then every tenth of the run."""
    early = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    regular = [round(steps * k / 10) for k in range(1, 11)]
    return sorted({s for s in early + regular if s <= steps})


# --- measurements ----------------------------------------------------------------------------------------


def layer_activations(model: PoetryLM, batch) -> list[torch.Tensor]:
    """Each LSTM layer's hidden states h_t at the real positions of a batch: a list of [positions, H]."""
    x = model.embed(batch.inputs)
    out = []
    for k in range(model.cfg.num_layers):
        w_ih, w_hh, b = model.lstm.layer_weights(k)
        layer = LSTM(w_ih.shape[1], model.cfg.hidden_size, 1, impl=model.cfg.lstm_impl)
        layer.load_state_dict({"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_l0": b})
        x, _ = layer(x, lengths=batch.lengths)
        out.append(x[batch.mask])
    return out


def unit_spread(rows_by_unit: torch.Tensor) -> float:
    """max over units j, k of max |row_j - row_k|, for a [H, ...] tensor whose first axis is the unit."""
    flat = rows_by_unit.reshape(rows_by_unit.shape[0], -1)
    return float((flat.max(dim=0).values - flat.min(dim=0).values).max())


def distinct_units(rows_by_unit: torch.Tensor) -> int:
    """How many different rows (hidden units) there are, compared exactly."""
    flat = rows_by_unit.reshape(rows_by_unit.shape[0], -1)
    return int(torch.unique(flat, dim=0).shape[0])


def gate_blocks(grad: torch.Tensor, hidden: int) -> list[torch.Tensor]:
    """A [4H, ·] weight gradient (or a [4H] bias gradient) cut into its gates i, f, g, o: four [H, ·]."""
    return list(grad.reshape(4, hidden, -1))


def symmetry(model: PoetryLM, batch) -> dict:
    """Per layer: activation spread and distinct units on the batch, gradient-row spread and distinct rows."""
    was_training = model.training
    model.eval()
    H = model.cfg.hidden_size
    model.zero_grad(set_to_none=True)
    loss = model.loss(batch)
    loss.backward()
    layers = []
    with torch.no_grad():
        for k, acts in enumerate(layer_activations(model, batch)):
            units = acts.T  # [H, positions]
            grads = {}
            for name in (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_l{k}"):
                g = getattr(model.lstm, name).grad
                g = torch.zeros_like(getattr(model.lstm, name)) if g is None else g
                blocks = gate_blocks(g, H)
                grads[name] = {
                    "row_spread": max(unit_spread(b) for b in blocks),
                    "distinct_rows": max(distinct_units(b) for b in blocks),
                    "norm": float(g.norm()),
                }
            layers.append(
                {
                    "layer": k,
                    "activation_spread": unit_spread(units),
                    "distinct_units": distinct_units(units),
                    "activation_abs_max": float(acts.abs().max()),
                    "grad_row_spread": max(v["row_spread"] for v in grads.values()),
                    "grad_distinct_rows": max(v["distinct_rows"] for v in grads.values()),
                    "grads": grads,
                }
            )
        head_bias = model.head.bias.grad
        others = [p.grad for n, p in model.named_parameters() if n != "head.bias" and p.grad is not None]
        rest = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in others]))) if others else 0.0
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {
        "probe_loss": float(loss.detach()),
        "grad_norm_head_bias": float(head_bias.norm()) if head_bias is not None else 0.0,
        "grad_norm_all_but_head_bias": rest,
        "layers": layers,
    }


def target_counts(encoded: list[list[int]], eos: int) -> Counter:
    """How often each id is a target: every character of every poem, and one <eos> per poem."""
    counts = Counter()
    for ids in encoded:
        counts.update(ids)
        counts[eos] += 1
    return counts


def unigram_entropy(train_ids: list[list[int]], eos: int) -> float:
    """Entropy (nats) of the train targets' character distribution: the best train loss without context."""
    counts = target_counts(train_ids, eos)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def unigram_dev_ppl(train_ids, dev_ids, vocab_size: int, eos: int, add: float = 1.0) -> float:
    """Dev perplexity of the add-one unigram model of train: what a model without any context scores."""
    counts = target_counts(train_ids, eos)
    total = sum(counts.values()) + add * vocab_size
    targets = target_counts(dev_ids, eos)
    nll = -sum(n * math.log((counts[t] + add) / total) for t, n in targets.items())
    return math.exp(nll / sum(targets.values()))


# --- the experiment --------------------------------------------------------------------------------------


@dataclass
class Data:
    vocab: object
    train_ids: list
    dev_ids: list
    probe: object  # a Batch
    unigram_entropy: float
    unigram_dev_ppl: float
    batches: list = field(default_factory=list)  # the training batches, the same for every scheme


def prepare(settings: InitSettings) -> Data:
    from core.corpus.vocab import EOS

    corpus = load_corpus(settings.corpus)
    vocab = corpus.build_vocab()
    train_ids = [vocab.encode(p) for p in corpus.splits["train"]]
    dev_ids = [vocab.encode(p) for p in corpus.splits["dev"]]
    probe = poem_batches(
        dev_ids[: settings.probe_poems], settings.probe_poems, seed=0, epoch=0, shuffle=False
    )
    batches, epoch = [], 0
    while len(batches) < settings.steps:
        batches += poem_batches(train_ids, settings.batch_size, seed=settings.seed, epoch=epoch)
        epoch += 1
    unigram = unigram_entropy(train_ids, EOS), unigram_dev_ppl(train_ids, dev_ids, len(vocab), EOS)
    return Data(vocab, train_ids, dev_ids, probe[0], *unigram, batches[: settings.steps])


def train_scheme(settings: InitSettings, scheme: str, data: Data, on_record=None) -> dict:
    """Train one scheme for settings.steps steps, measuring at record_steps(); the result as a dict."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}")
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    cfg = ModelConfig(
        vocab_size=len(data.vocab),
        embed_size=settings.embed_size,
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        init=scheme,
    )
    model = PoetryLM(cfg).to(device)
    optimizer = make_torch_optimizer(settings.optimizer, model.parameters(), settings.lr, 0.9, 0.0)
    probe = data.probe.to(device)
    marks = set(record_steps(settings.steps))
    records, window = [], []

    def measure(step: int) -> None:
        dev = evaluate(model, data.dev_ids, batch_size=64, device=device)
        row = {
            "step": step,
            "train_loss": sum(window) / len(window) if window else None,
            "dev_loss": dev.loss,
            "dev_ppl": dev.perplexity,
            **symmetry(model, probe),
        }
        records.append(row)
        window.clear()
        if on_record is not None:
            on_record(scheme, row)

    model.train()
    measure(0)
    for step, batch in enumerate(data.batches, start=1):
        batch = batch.to(device)
        loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        optimizer.step()
        window.append(float(loss.detach()))
        if step in marks:
            measure(step)
    # the loss over the whole train split at the end: a model without context cannot go below the entropy
    final_train = evaluate(model, data.train_ids, batch_size=64, device=device)
    return {
        "scheme": scheme,
        "format": FORMAT,
        "settings": settings.per_scheme(),
        "records": records,
        "train_split_loss_end": final_train.loss,
    }


def cache_path(root: Path, scheme: str) -> Path:
    return Path(root) / f"{scheme}.json"


def run_init_experiment(
    settings: InitSettings, cache_dir: Path, *, fresh: bool = False, on_record=None
) -> dict:
    """Every scheme of settings.schemes; a scheme already computed with the same settings is read back."""
    data = prepare(settings)
    results = []
    for scheme in settings.schemes:
        path = cache_path(cache_dir, scheme)
        cached = None
        if path.exists() and not fresh:
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                cached = None
        if (
            cached is None
            or cached.get("settings") != settings.per_scheme()
            or cached.get("format") != FORMAT
        ):
            cached = train_scheme(settings, scheme, data, on_record)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cached, ensure_ascii=False), encoding="utf-8")
            tmp.replace(path)
        results.append(cached)
    return {
        "experiment": "init",
        "corpus": settings.corpus,
        "settings": settings.to_dict(),
        "vocab_size": len(data.vocab),
        "unigram_entropy": data.unigram_entropy,
        "unigram_ppl": math.exp(data.unigram_entropy),
        "unigram_dev_ppl": data.unigram_dev_ppl,
        "record_steps": record_steps(settings.steps),
        "schemes": results,
        "summary": [summarize_scheme(r, data.unigram_entropy) for r in results],
    }


def summarize_scheme(result: dict, unigram: float) -> dict:
    """One table row: losses against the unigram entropy, dev perplexity, and whether units ever differed."""
    records = result["records"]
    last = records[-1]
    best = min(records, key=lambda r: r["dev_ppl"])
    losses = [r["train_loss"] for r in records if r["train_loss"] is not None]
    return {
        "scheme": result["scheme"],
        "dev_ppl_start": records[0]["dev_ppl"],
        "dev_ppl_end": last["dev_ppl"],
        "best_dev_ppl": best["dev_ppl"],
        "best_dev_step": best["step"],
        "train_loss_end": last["train_loss"],
        "train_loss_min": min(losses) if losses else None,
        "train_split_loss_end": result["train_split_loss_end"],
        "below_unigram_entropy": unigram - result["train_split_loss_end"],
        "max_activation_spread": max(ly["activation_spread"] for r in records for ly in r["layers"]),
        "max_grad_row_spread": max(ly["grad_row_spread"] for r in records for ly in r["layers"]),
        "min_distinct_units": min(ly["distinct_units"] for ly in last["layers"]),
        "max_distinct_units": max(ly["distinct_units"] for r in records for ly in r["layers"]),
        "max_grad_distinct_rows": max(ly["grad_distinct_rows"] for r in records for ly in r["layers"]),
        "max_grad_norm_but_head_bias": max(r["grad_norm_all_but_head_bias"] for r in records),
    }
