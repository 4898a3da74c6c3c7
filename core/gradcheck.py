"""Prove the hand-derived gradients (docs/lstm-derivatives.md, core.reference.numpy_lm) against torch
autograd.

The same random weights go into core.reference.numpy_lm.NumpyLM and core.model.PoetryLM (float64, every
available LSTM implementation: "autograd" = torch derives BPTT, "fused" = our own hand-written torch
backward). On a random batch of padded "poems" both compute the mean cross-entropy with temperature τ, and
we compare, for every parameter, the NumPy hand gradient with torch's:

    rel_error(a, b) = max_j |a_j - b_j| / max(max_j |a_j|, max_j |b_j|)

the largest element-wise difference measured against the largest gradient entry of that parameter. An
element-wise |a_j - b_j| / max(|a_j|, |b_j|) would flag rounding noise on entries that are ~0 (unused
embedding rows, saturated gates) as 100% errors; this one stays meaningful there, and a wrong formula
still shows up as an error of order 1, far above the 1e-8 tolerance.

Independently of torch, central finite differences (4th-order stencil, computed in extended precision,
np.longdouble) check a sample of coordinates of every parameter, once without and once with dropout; their
error is max over the sampled j of |fd_j - a_j|, divided by the same scale max_j |a_j| over all entries.

    python -m core.gradcheck --json [--layers 3] [--batch 7] [--seed 0] [--temperature 0.8]
Exit 0 when every error is within tolerance, 1 otherwise.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from core.cli import ArgumentParser, print_json, run
from core.options import add_option
from core.reference.numpy_lm import EMBEDDING, NumpyLM, random_batch, random_params

TOLERANCE = 1e-8  # hand gradient vs autograd, float64
FD_TOLERANCE = 1e-8  # hand gradient vs extended-precision finite differences


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(max |a|, max |b|): 0 when both are exactly zero (see the module docstring)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    diff = float(np.max(np.abs(a - b), initial=0.0))
    return 0.0 if diff == 0.0 else diff / max(scale, np.finfo(np.float64).tiny)


# --- torch autograd ----------------------------------------------------------------------------------------


def available_impls() -> list[str]:
    from core.lstm import IMPLS

    return [impl for impl in ("autograd", "fused") if impl in IMPLS]


def torch_gradients(params, batch, *, num_layers, impl, temperature, tie_weights=False):
    """(loss, {name: grad}) from PoetryLM in float64 with these weights, through torch autograd."""
    import torch
    import torch.nn.functional as F

    from core.model import ModelConfig, PoetryLM

    vocab, embed = params[EMBEDDING].shape
    hidden = params["lstm.weight_hh_l0"].shape[1]
    cfg = ModelConfig(
        vocab_size=vocab,
        embed_size=embed,
        hidden_size=hidden,
        num_layers=num_layers,
        dropout=0.0,
        tie_weights=tie_weights,
        lstm_impl=impl,
    )
    model = PoetryLM(cfg).double()
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(torch.from_numpy(params[name]))
    inputs, targets, mask, lengths = (torch.from_numpy(np.asarray(a)) for a in batch)
    logits, _ = model(inputs, lengths=lengths)
    # Not model.loss: it casts logits to float32; here everything stays float64.
    loss = F.cross_entropy(logits[mask] / temperature, targets[mask], reduction="mean")
    loss.backward()
    return loss.item(), {name: p.grad.numpy() for name, p in named.items()}


# --- finite differences ------------------------------------------------------------------------------------


def sample_coordinates(name: str, shape, count: int, rng, used_tokens) -> list[tuple]:
    """Random coordinates; embedding rows among the tokens the batch reads (other rows' gradient is 0)."""
    coords = []
    for _ in range(count):
        if name == EMBEDDING:
            coords.append((int(rng.choice(used_tokens)), int(rng.integers(shape[1]))))
        else:
            coords.append(tuple(int(rng.integers(n)) for n in shape))
    return coords


def finite_difference_check(
    params, batch, *, num_layers, temperature, dropout, seed, samples, step=1e-4, tie_weights=False
):
    """Hand gradient (float64) vs the 4th-order central difference of the loss in np.longdouble.

    (-L(θ+2h) + 8 L(θ+h) - 8 L(θ-h) + L(θ-2h)) / 12h has error O(h⁴); in extended precision (64-bit
    mantissa) rounding adds ~1e-19/h, so with h = 1e-4 both stay far below what a wrong formula costs.
    With dropout, every evaluation redraws the same masks from the same seed.
    """
    rng = np.random.default_rng(seed + 1)
    model = NumpyLM(params, num_layers, dropout=dropout, tie_weights=tie_weights)
    train = dropout > 0

    def loss_of(m):
        return m.forward(*batch, train=train, rng=np.random.default_rng(seed), temperature=temperature)

    _, cache = loss_of(model)
    grads = model.backward(cache)
    wide = NumpyLM(
        {k: v.astype(np.longdouble) for k, v in model.params.items()},
        num_layers,
        dropout=dropout,
        tie_weights=tie_weights,
    )
    used = np.unique(np.asarray(batch[0])[np.asarray(batch[2])])
    per_param, count = {}, 0
    for name in model.parameter_names():
        theta = wide.params[name]
        coords = sample_coordinates(name, theta.shape, samples, rng, used)
        numeric, analytic = [], []
        for idx in coords:
            original = theta[idx]
            values = []
            for shift in (2, 1, -1, -2):
                theta[idx] = original + shift * step
                values.append(loss_of(wide)[0])
            theta[idx] = original
            numeric.append((-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step))
            analytic.append(grads[name][idx])
        # Same yardstick as against autograd: errors in units of the parameter's largest gradient entry.
        scale = float(np.max(np.abs(grads[name])))
        diff = np.abs(np.array(numeric, dtype=np.float64) - np.array(analytic))
        per_param[name] = float(diff.max()) / scale if scale > 0 else float(diff.max())
        count += len(coords)
    return {
        "dropout": dropout,
        "coordinates": count,
        "step": step,
        "max_rel_error": max(per_param.values()),
        "parameters": per_param,
    }


# --- the command -------------------------------------------------------------------------------------------


def gradcheck(
    *,
    layers=3,
    batch_size=7,
    max_len=9,
    vocab=40,
    embed=12,
    hidden=16,
    seed=0,
    temperature=0.8,
    padding=True,
    tie_weights=False,
    fd_samples=6,
    fd_dropout=0.3,
    impls=None,
) -> dict:
    """Run every check; returns the JSON report (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if tie_weights:
        embed = hidden
    params = random_params(vocab, embed, hidden, layers, rng=rng)
    batch = random_batch(batch_size, max_len, vocab, rng=rng, padding=padding)
    shapes = {
        "layers": layers,
        "batch": batch_size,
        "max_len": max_len,
        "vocab": vocab,
        "embed": embed,
        "hidden": hidden,
        "lengths": [int(n) for n in batch[3]],
        "tokens": int(batch[2].sum()),
        "temperature": temperature,
        "tie_weights": tie_weights,
    }
    model = NumpyLM(params, layers, tie_weights=tie_weights)

    started = time.perf_counter()
    loss, cache = model.forward(*batch, temperature=temperature)
    grads = model.backward(cache)
    timing = {"numpy_s": time.perf_counter() - started}

    names = model.parameter_names()
    per_impl = {}
    for impl in impls or available_impls():
        started = time.perf_counter()
        torch_loss, torch_grads = torch_gradients(
            params, batch, num_layers=layers, impl=impl, temperature=temperature, tie_weights=tie_weights
        )
        timing[f"torch_{impl}_s"] = time.perf_counter() - started
        per_impl[impl] = {
            "loss_rel_error": abs(loss - torch_loss) / abs(torch_loss),
            "parameters": {name: rel_error(grads[name], torch_grads[name]) for name in names},
        }
    worst = {name: max(r["parameters"][name] for r in per_impl.values()) for name in names}

    started = time.perf_counter()
    fd = [
        finite_difference_check(
            params,
            batch,
            num_layers=layers,
            temperature=temperature,
            dropout=p,
            seed=seed,
            samples=fd_samples,
            tie_weights=tie_weights,
        )
        for p in (0.0, fd_dropout)
    ]
    timing["finite_difference_s"] = time.perf_counter() - started

    max_rel = max([*worst.values(), *(r["loss_rel_error"] for r in per_impl.values())])
    fd_max = max(r["max_rel_error"] for r in fd)
    return {
        "passed": bool(max_rel <= TOLERANCE and fd_max <= FD_TOLERANCE),
        "max_rel_error": max_rel,
        "parameters": worst,
        "tolerance": TOLERANCE,
        "relative_error": "per parameter: max_j |a_j - b_j| / max(max_j |a_j|, max_j |b_j|)",
        "loss": loss,
        "impls": per_impl,
        "finite_difference": {
            "max_rel_error": fd_max,
            "tolerance": FD_TOLERANCE,
            "stencil": "4th-order central",
            "precision": str(np.dtype(np.longdouble)),
            "relative_error": "max over sampled j of |fd_j - a_j| / max over all j of |a_j|",
            "checks": fd,
        },
        "shapes": shapes,
        "dtype": "float64",
        "seed": seed,
        "timing": timing,
    }


def _human(report: dict) -> str:
    lines = [f"{'parameter':<22} {'max rel error':>14}"]
    lines += [f"{name:<22} {err:>14.3e}" for name, err in report["parameters"].items()]
    lines.append(
        f"impls: {', '.join(report['impls'])}; finite differences: "
        f"{report['finite_difference']['max_rel_error']:.3e} "
        f"over {sum(c['coordinates'] for c in report['finite_difference']['checks'])} coordinates"
    )
    lines.append(
        f"{'PASSED' if report['passed'] else 'FAILED'}: max rel error {report['max_rel_error']:.3e} "
        f"(tolerance {report['tolerance']:g})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m core.gradcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_option(parser, "layers", int, 3, "stacked LSTM layers", low=1, high=16)
    add_option(parser, "batch", int, 7, "poems in the batch", low=1, high=256)
    add_option(parser, "max_len", int, 9, "longest poem of the batch (steps)", low=1, high=512)
    add_option(
        parser, "vocab", int, 40, "vocabulary size (4 special tokens and the characters)", low=5, high=10_000
    )
    add_option(parser, "embed", int, 12, "embedding size", low=1, high=1024)
    add_option(parser, "hidden", int, 16, "hidden size", low=1, high=1024)
    add_option(parser, "seed", int, 0, "random seed", low=0, high=2**32 - 1)
    add_option(
        parser, "temperature", float, 0.8, "softmax temperature of the loss", low=0, low_open=True, high=100
    )
    parser.add_argument("--no-padding", action="store_true", help="every row as long as the longest")
    parser.add_argument("--tie-weights", action="store_true", help="head.weight is embedding.weight")
    add_option(parser, "fd_samples", int, 6, "finite-difference samples per parameter", low=0, high=10_000)
    parser.add_argument(
        "--impl",
        choices=("autograd", "fused"),
        action="append",
        help="torch LSTM implementation(s) to compare with (default: all)",
    )
    args = parser.parse_args(argv)
    report = gradcheck(
        layers=args.layers,
        batch_size=args.batch,
        max_len=args.max_len,
        vocab=args.vocab,
        embed=args.embed,
        hidden=args.hidden,
        seed=args.seed,
        temperature=args.temperature,
        padding=not args.no_padding,
        tie_weights=args.tie_weights,
        fd_samples=args.fd_samples,
        impls=args.impl,
    )
    if args.json:
        print_json(report)
    else:
        sys.stderr.write(_human(report) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    run(main)
