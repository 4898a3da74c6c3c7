"""What a checkpoint must hold before any code relies on it: the header's layout, every part of the
metadata (model sizes, vocabulary, progress, RNG states, optimizer and scheduler settings), and the tensors
(shapes, dtypes, finite values). Each problem is one CheckpointError line; nothing in a file is ever
imported or evaluated. Saving runs the same checks first, so we never write a file we would refuse."""

from __future__ import annotations

import json
import random
from typing import Any

import torch

from core.errors import CheckpointError

MAX_TENSORS = 4096  # a checkpoint holds a few dozen
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SCRIPTS = ("simplified", "traditional")
PROGRESS_COUNTS = ("epoch", "batch", "step", "tokens_seen", "bad_evals", "evals", "skipped_steps")


def short(obj: Any, limit: int = 60) -> str:
    """A value from a hostile file, quoted on one line and cut short."""
    text = json.dumps(obj, ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole(value: Any, low: int = 0, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)


def check_layout(header: dict, data_len: int, name: str) -> None:
    """Every tensor entry well formed and inside the file (a cut file is caught from its header alone)."""
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    if len(entries) > MAX_TENSORS:
        raise CheckpointError(f"{name}: {len(entries)} tensors, over the limit of {MAX_TENSORS}")
    end = 0
    for key, info in entries:
        ok = (
            isinstance(info, dict)
            and isinstance(info.get("dtype"), str)
            and isinstance(info.get("shape"), list)
            and all(whole(d) for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(whole(o) for o in info["data_offsets"])
            and info["data_offsets"][0] <= info["data_offsets"][1]
        )
        if not ok:
            raise CheckpointError(f"{name}: malformed header entry for tensor {short(key)}")
        end = max(end, info["data_offsets"][1])
    if end > data_len:
        raise CheckpointError(
            f"{name} is truncated: its tensors need {end} bytes after the header, the file holds {data_len}"
        )


# --- what the metadata must hold (plain data: nothing in it is ever imported or evaluated) -------------


def _model_config(meta: dict, name: str):
    """The ModelConfig of a checkpoint, every field checked against its declaration (core.model_config):
    PoetryLM is built from it as is."""
    from core.model_config import ModelConfig

    m = meta["model"]
    if "vocab_size" not in m:
        raise CheckpointError(f"{name}: its model section lacks vocab_size")
    problems = ModelConfig.problems({k: v for k, v in m.items() if k in ModelConfig.specs()})
    if problems:
        key, problem = next(iter(problems.items()))
        raise CheckpointError(f"{name}: model {key} {problem}")
    return ModelConfig.from_dict(m)


def check_meta(meta: dict, name: str) -> None:
    """Refuse metadata that code reading a checkpoint would trip over (one line, never a traceback)."""
    from core.corpus.vocab import Vocab

    for key in ("model", "vocab", "corpus", "progress"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{name}: metadata lacks {key!r}")
    cfg = _model_config(meta, name)
    try:
        vocab = Vocab.from_json(meta["vocab"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{name}: malformed vocabulary ({exc})") from exc
    if len(vocab) != cfg.vocab_size:
        raise CheckpointError(
            f"{name}: its model was trained with |V|={cfg.vocab_size}, its vocabulary has {len(vocab)}"
        )
    corpus = meta["corpus"]
    if not isinstance(corpus.get("name"), str):
        raise CheckpointError(f"{name}: metadata lacks the corpus name")
    options = corpus.get("options", {})
    if not isinstance(options, dict) or options.get("script", "simplified") not in SCRIPTS:
        raise CheckpointError(f"{name}: malformed corpus options {short(options)}")
    for key, kind in (("fingerprint", str), ("split_seed", int)):
        if key in corpus and not isinstance(corpus[key], kind):
            raise CheckpointError(f"{name}: malformed corpus {key} {short(corpus[key])}")
    _check_progress(meta["progress"], name)
    for key in ("train", "scheduler", "rng", "optimizer"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{name}: malformed {key} section")
    _check_python_rng(meta.get("rng", {}), name)
    _check_optimizer_info(meta.get("optimizer", {}), name)
    if "scheduler" in meta:
        _check_scheduler(meta["scheduler"], name)


def _check_progress(p: dict, name: str) -> None:
    for key in PROGRESS_COUNTS:
        if key in p and not whole(p[key]):
            raise CheckpointError(f"{name}: progress {key} {short(p[key])} is not a whole number")
    for key in ("best_dev_ppl", "patience_best", "elapsed_s", "dev_ppl", "dev_loss"):
        if key in p and not (isinstance(p[key], int | float) and not isinstance(p[key], bool)):
            raise CheckpointError(f"{name}: progress {key} {short(p[key])} is not a number")
    best = p.get("best_path", "")
    if not isinstance(best, str) or "/" in best or "\\" in best or best in (".", ".."):
        raise CheckpointError(f"{name}: progress best_path {short(best)} is not a file name")


def _check_python_rng(rng: dict, name: str) -> None:
    if "python" not in rng:
        return
    try:
        version, internal, gauss = rng["python"]
        random.Random().setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{name}: malformed Python RNG state") from exc


OPTIMIZER_NUMBERS = (
    "lr", "initial_lr", "weight_decay", "momentum", "dampening", "eps", "alpha", "rho", "lr_decay",
    "initial_accumulator_value", "step",
)  # fmt: skip


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(value: Any) -> bool:
    """A JSON scalar or a list of numbers (or nulls: LambdaLR stores its lambdas as None): what optimizer
    and scheduler settings are made of."""
    if _number(value) or value is None or isinstance(value, str | bool):
        return True
    return isinstance(value, list) and all(_number(v) or v is None for v in value)


def _check_optimizer_info(opt: dict, name: str) -> None:
    """torch's Optimizer.load_state_dict trusts these: settings must be plain values of the right kind."""
    state = opt.get("state")
    if state is None:
        return
    ok = isinstance(state, dict)
    groups = state.get("param_groups", []) if ok else None
    scalars = state.get("scalars", {}) if ok else None
    ok = ok and isinstance(groups, list) and isinstance(scalars, dict)
    for group in groups if ok else []:
        ok = ok and isinstance(group, dict) and isinstance(group.get("params"), list)
        ok = ok and all(whole(i) for i in group["params"]) and _settings_ok(group, skip="params")
        ok = ok and ("betas" not in group or (_plain(group["betas"]) and len(group["betas"]) == 2))
    for pid, entries in scalars.items() if ok else []:
        ok = ok and pid.isdigit() and isinstance(entries, dict) and _settings_ok(entries)
    if not ok:
        raise CheckpointError(f"{name}: malformed optimizer state")


def _settings_ok(settings: dict, skip: str = "") -> bool:
    return all(
        k == skip or (_plain(v) and (k not in OPTIMIZER_NUMBERS or _number(v))) for k, v in settings.items()
    )


SCHEDULER_NUMBERS = (
    "factor", "patience", "cooldown", "eps", "last_epoch", "mode_worse", "threshold", "best",
    "cooldown_counter", "num_bad_epochs",
)  # fmt: skip


def _check_scheduler(state: dict, name: str) -> None:
    """A scheduler's load_state_dict sets attributes from this dict (ReduceLROnPlateau, LambdaLR): no key
    may replace a method (`step: 5` would), and the numbers it computes with must be numbers."""
    from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

    for key, value in state.items():
        method = any(callable(getattr(cls, key, None)) for cls in (ReduceLROnPlateau, LambdaLR))
        shadows = key.startswith("__") or key == "optimizer" or method
        if shadows or not _plain(value) or (key in SCHEDULER_NUMBERS and not _number(value)):
            raise CheckpointError(f"{name}: malformed scheduler state ({short(key)})")
    modes = (state.get("mode", "min"), state.get("threshold_mode", "rel"))
    if modes[0] not in ("min", "max") or modes[1] not in ("rel", "abs"):
        raise CheckpointError(f"{name}: malformed scheduler state (mode)")


def check_resumable(ckpt) -> None:
    """What resuming a run needs beyond what loading checks: every part of the training state present.

    load_checkpoint already refused malformed sections; this refuses missing ones (one line, no KeyError).
    """
    meta, name = ckpt.meta, ckpt.path.name
    sections = ("train", "scheduler", "rng", "optimizer")
    missing = [key for key in sections if not isinstance(meta.get(key), dict)]
    if not missing and "python" not in meta["rng"]:
        missing.append("rng.python")
    if not missing and "rng.torch" not in ckpt.tensors:
        missing.append("the torch RNG state")
    if missing:
        raise CheckpointError(f"{name} cannot be resumed: it lacks {', '.join(missing)}")
    from core.training.settings import TrainConfig

    train = meta["train"]
    if not isinstance(train.get("corpus"), str):
        raise CheckpointError(f"{name} cannot be resumed: its training settings name no corpus")
    problems = TrainConfig.problems({k: v for k, v in train.items() if k in TrainConfig.specs()})
    if problems:
        key, problem = next(iter(problems.items()))
        raise CheckpointError(f"{name} cannot be resumed: its training setting {key} {problem}")


# --- what the tensors must be ----------------------------------------------------------------------------


def _finite(t: torch.Tensor) -> bool:
    if not t.is_floating_point() or t.numel() == 0:
        return True
    low, high = torch.aminmax(t.detach())  # NaN propagates through min and max
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def check_tensors(meta: dict, tensors: dict[str, torch.Tensor], name: str) -> None:
    cfg = _model_config(meta, name)
    expected = {**cfg.parameter_shapes(), **cfg.buffer_shapes()}
    rows = tensors.get("model.embedding.weight")
    if rows is not None and rows.dim() == 2 and rows.shape[0] != cfg.vocab_size:
        raise CheckpointError(
            f"{name}: its weights were trained with |V|={rows.shape[0]}, its vocabulary has {cfg.vocab_size}"
        )
    sizes = f"embed {cfg.embed_size}, hidden {cfg.hidden_size}, layers {cfg.num_layers}, |V|={cfg.vocab_size}"
    for key, shape in expected.items():
        t = tensors.get(f"model.{key}")
        if t is None:
            raise CheckpointError(f"{name}: missing weights {key}")
        if tuple(t.shape) != shape:
            raise CheckpointError(
                f"{name}: {key} has shape {tuple(t.shape)}, but its config ({sizes}) needs {shape}"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{name}: {key} is {t.dtype}, not a float tensor")
    order = list(cfg.parameter_shapes().values())  # the optimizer numbers the parameters alone
    _check_optimizer_keys(meta, tensors, name)
    for key, t in tensors.items():
        if key.startswith("model.") and key[len("model.") :] not in expected:
            raise CheckpointError(f"{name}: unexpected weights {short(key[len('model.') :])}")
        if key.startswith("optim."):
            parts = key.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(order):
                raise CheckpointError(f"{name}: unexpected optimizer tensor {short(key)}")
            if tuple(t.shape) != order[int(parts[1])] or t.dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{name}: optimizer tensor {key} does not match its parameter")
        elif key == "rng.torch":
            try:
                torch.Generator().set_state(t)
            except (RuntimeError, TypeError) as exc:
                raise CheckpointError(f"{name}: malformed torch RNG state") from exc
        elif key.startswith("rng.") and (t.dtype != torch.uint8 or t.dim() != 1):
            raise CheckpointError(f"{name}: malformed RNG state {key}")
        if key.startswith(("model.", "optim.", "npoptim.")) and t.dtype in FLOAT_DTYPES and not _finite(t):
            raise CheckpointError(f"{name}: {key.split('.', 1)[1]} contains NaN or Inf")


def _check_optimizer_keys(meta: dict, tensors: dict[str, torch.Tensor], name: str) -> None:
    """Every parameter with optimizer state has the same entries (a lost `exp_avg_sq` would only fail
    at the first step after resuming)."""
    state = (meta.get("optimizer") or {}).get("state") or {}
    keys: dict[str, set[str]] = {pid: set(entries) for pid, entries in state.get("scalars", {}).items()}
    for key in tensors:
        parts = key.split(".", 2)
        if parts[0] == "optim" and len(parts) == 3:
            keys.setdefault(parts[1], set()).add(parts[2])
    if len({frozenset(v) for v in keys.values()}) > 1:
        raise CheckpointError(f"{name}: incomplete optimizer state (parameters hold different entries)")
