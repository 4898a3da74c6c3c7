"""Checkpoints: one self-contained safetensors file per save, written atomically, loaded without running code.

A checkpoint holds tensors (weights, optimizer state, RNG states) and one JSON metadata entry (model config,
vocabulary, corpus, progress, optimizer hyper-parameters, library versions, a SHA-256 of the tensors).
safetensors is a flat header + raw bytes: there is no pickle anywhere, so a hostile file can at worst be
refused. We never call torch.load; a zip or pickle (a `.pt`) is recognised by its first bytes and refused
before anything in it is read or decompressed.

Reading checks the size of the file and of its header before reading either, then the header's layout,
then every part of the metadata that code later relies on (model sizes, vocabulary, progress, RNG states,
optimizer state), then the tensors (shapes, dtypes, finite values, checksum). Every problem is one
CheckpointError line. Saving runs the same checks first: we never write a file that we would refuse to load.

Writes go to a temporary file in the same folder, are fsynced, renamed over the target with os.replace and
the folder is fsynced: a process killed at any moment leaves either the old file or the new one. A killed
process cannot remove its own temporary file; `clean_stale_temps` (run before every save) removes those of
processes that no longer exist, and temporary names never end in `.safetensors`, so listings skip them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import secrets
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from core.errors import CheckpointError
from core.versions import library_versions, require_torch

FORMAT = "poemtui-checkpoint/1"
EXT = ".safetensors"
META_KEY = "poemtui"
MAX_HEADER_BYTES = 16 << 20  # our header is a few hundred KB (the vocabulary); a larger one is refused
MAX_FILE_BYTES = 4 << 30  # default limit; POEMTUI_MAX_CHECKPOINT_BYTES overrides it (read at each load)
MAX_TENSORS = 4096  # a checkpoint holds a few dozen
MAX_LAYERS = 64
MAX_WIDTH = 1 << 22  # vocabulary, embedding and hidden sizes
TMP_PREFIX = ".tmp-"  # temporary files start with this; listings skip them
TMP_SUFFIX = ".part"  # ... and end with this, so that a `*.safetensors` glob never matches one
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SCRIPTS = ("simplified", "traditional")
PROGRESS_COUNTS = ("epoch", "batch", "step", "tokens_seen", "bad_evals", "evals", "skipped_steps")

# First bytes of files people mistake for checkpoints, and what we tell them. Checked only when the file
# is not a well-formed safetensors file (a safetensors header length may start with any byte).
_MAGIC = (
    (b"PK\x03\x04", "a zip archive (torch.save): it holds pickled code, which poemtui never loads"),
    (b"PK\x05\x06", "a zip archive (torch.save): it holds pickled code, which poemtui never loads"),
    (b"\x80", "a Python pickle: poemtui never unpickles (it can run code)"),
    (b"\x1f\x8b", "gzip-compressed: poemtui reads plain .safetensors only (nothing was decompressed)"),
    (b"BZh", "bzip2-compressed: poemtui reads plain .safetensors only (nothing was decompressed)"),
    (b"\xfd7zXZ\x00", "xz-compressed: poemtui reads plain .safetensors only (nothing was decompressed)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: poemtui reads plain .safetensors only (nothing decompressed)"),
    (b"\x93NUMPY", "a NumPy array file, not a poemtui checkpoint"),
)


# --- JSON that survives inf/nan (ReduceLROnPlateau keeps `best = inf`) ---------------------------------


def _to_json(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _to_json(obj.item())
    return obj


_SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _from_json(obj: Any) -> Any:
    """Undo _to_json. Only the three spellings it writes become floats; anything else stays data."""
    if isinstance(obj, dict):
        spelling = obj.get("__float__")
        if len(obj) == 1 and isinstance(spelling, str) and spelling in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[spelling]
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_to_json(obj), ensure_ascii=False, allow_nan=False)


# --- optimizer state <-> flat tensors + JSON ------------------------------------------------------------


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict -> tensors named optim.<param>.<key> and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state_dict["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = _to_json(value)
    return tensors, {"param_groups": _to_json(state_dict["param_groups"]), "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in info.get("scalars", {}).items():
        for key, value in entries.items():
            value = _from_json(value)
            # torch keeps `step` as a 0-d float tensor; restore that type exactly
            state.setdefault(int(pid), {})[key] = torch.tensor(float(value)) if key == "step" else value
    return {"state": state, "param_groups": _from_json(info["param_groups"])}


# --- writing ---------------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (some filesystems cannot fsync a folder: then there is nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A fresh temporary name next to `path`: .tmp-<pid>-<random>-<name>.part (the pid lets a later run
    tell a dead writer's leftover from a write in progress)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}{TMP_SUFFIX}")


def is_temp(path: Path) -> bool:
    return Path(path).name.startswith(TMP_PREFIX)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers only ever see the old file or the complete new one."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, or Ctrl-C with the default handler: no temp file left
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"could not write {path}: {exc.strerror or exc}; the previous checkpoints are intact"
            ) from exc
        raise
    _fsync_dir(path.parent)


def atomic_link(src: Path, dst: Path) -> None:
    """Make `dst` a complete copy of `src` atomically (a hard link when the filesystem allows it)."""
    src, dst = Path(src), Path(dst)
    tmp = temp_path(dst)
    try:
        os.link(src, tmp)
    except OSError:
        try:
            data = src.read_bytes()  # no hard links here (or src vanished): copy
        except OSError as exc:
            raise CheckpointError(f"could not update {dst}: {exc.strerror or exc}") from exc
        atomic_write_bytes(dst, data)
        return
    try:
        os.replace(tmp, dst)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not update {dst}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(dst.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove temporary files left by writers that were killed (their pid no longer exists).

    Temporary files of live processes are writes in progress and are left alone. Returns what was removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(Path(folder) / name)
                removed.append(Path(folder) / name)
            except OSError:
                pass
    return removed


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint files of a folder (temporary files never), oldest first."""
    try:
        paths = [p for p in Path(folder).iterdir() if p.suffix == EXT and not is_temp(p) and p.is_file()]
    except OSError:
        return []

    def mtime(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:
            return 0

    return sorted(paths, key=lambda p: (mtime(p), p.name))


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as independent CPU tensors (a tied head is stored once, as the embedding)."""
    tied = getattr(getattr(model, "cfg", None), "tie_weights", False)
    return {
        f"model.{k}": v.detach().to("cpu", copy=True).contiguous()
        for k, v in model.state_dict().items()
        if not (tied and k == "head.weight")
    }


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (catches damaged files)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype!s}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def encode_checkpoint(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    meta = {
        "format": FORMAT,
        "saved_at": time.time(),
        "versions": library_versions(),
        **meta,
        "tensors_sha256": tensors_digest(tensors),
    }
    return st_save(tensors, metadata={META_KEY: dumps(meta)})


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> int:
    """Check, serialise and write atomically; returns the file size in bytes.

    The checks are those of load_checkpoint (finite weights, shapes, metadata): a file that could not be
    loaded is never written, so `last` never points at one.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    cpu_meta = _from_json(json.loads(dumps(meta)))  # what a reader will see
    try:
        _check_meta(cpu_meta, path.name)
        _check_tensors(cpu_meta, tensors, path.name)
    except CheckpointError as exc:
        raise CheckpointError(f"not saved: {exc}; the previous checkpoints are intact") from exc
    data = encode_checkpoint(tensors, meta)
    if len(data) > max_file_bytes():
        raise CheckpointError(
            f"{path.name} would be {len(data) >> 20} MiB, over the {max_file_bytes() >> 20} MiB limit that "
            "loading enforces (raise POEMTUI_MAX_CHECKPOINT_BYTES)"
        )
    clean_stale_temps(path.parent)
    atomic_write_bytes(path, data)
    return len(data)


# --- reading ---------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model.") :]: v for k, v in self.tensors.items() if k.startswith("model.")}

    def optimizer_state(self) -> dict | None:
        info = self.meta.get("optimizer", {}).get("state")
        if info is None or "param_groups" not in info:
            return None
        try:
            return unflatten_optimizer(self.tensors, info)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{self.path.name}: malformed optimizer state ({exc})") from exc

    @property
    def model_config(self):
        from core.model import ModelConfig

        return ModelConfig.from_dict(self.meta["model"])  # validated by load_checkpoint

    @property
    def vocab(self):
        from core.corpus.vocab import Vocab

        return Vocab.from_json(self.meta["vocab"])  # validated by load_checkpoint

    def build_model(self, device: str | torch.device = "cpu", **overrides):
        """A PoetryLM with these weights, in eval mode."""
        from core.model import PoetryLM

        cfg = self.model_config
        for key, value in overrides.items():
            setattr(cfg, key, value)
        model = PoetryLM(cfg)
        state = self.model_state
        if cfg.tie_weights:
            state["head.weight"] = state["embedding.weight"]
        model.load_state_dict(state)
        return model.to(device).eval()


def max_file_bytes() -> int:
    text = os.environ.get("POEMTUI_MAX_CHECKPOINT_BYTES")
    if text is None:
        return MAX_FILE_BYTES
    try:
        return int(text)
    except ValueError:
        raise CheckpointError(f"POEMTUI_MAX_CHECKPOINT_BYTES={text!r} is not a number of bytes") from None


def _short(obj: Any, limit: int = 60) -> str:
    """A value from a hostile file, quoted on one line and cut short."""
    text = json.dumps(obj, ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sniff(head: bytes, name: str) -> None:
    """Refuse with a message that says what the file is, when its first bytes tell."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise CheckpointError(f"{name} is {what}")


def _open_regular(path: Path):
    """Open for reading; refuse anything but a regular file before reading (a FIFO would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise CheckpointError(f"no such checkpoint: {path}") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{path} is a folder, not a checkpoint") from exc
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a folder, not a checkpoint" if stat.S_ISDIR(mode) else "not a regular file"
        raise CheckpointError(f"{path} is {what}")
    return os.fdopen(fd, "rb")


def _read(path: Path, *, whole: bool) -> tuple[dict, bytes | None]:
    """The parsed header (and, if `whole`, the file's bytes), every size checked before it is read."""
    name = path.name
    with _open_regular(path) as fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            limit = max_file_bytes()
            if size > limit:
                raise CheckpointError(f"{name} is {size >> 20} MiB, over the {limit >> 20} MiB limit")
            head = fh.read(8)
            if len(head) < 8:
                _sniff(head, name)
                raise CheckpointError(f"{name} is empty or truncated ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                _sniff(head, name)
                raise CheckpointError(
                    f"{name} is not a safetensors checkpoint: its header length ({n} bytes) exceeds the "
                    f"{MAX_HEADER_BYTES >> 20} MiB limit"
                )
            if 8 + n > size:
                _sniff(head, name)
                raise CheckpointError(f"{name} is truncated (header says {n} bytes, file has {size})")
            raw = fh.read(n)
            if len(raw) != n:
                raise CheckpointError(f"{name} changed while it was being read")
            if not raw.startswith(b"{"):
                _sniff(head + raw[:8], name)
                raise CheckpointError(f"{name} is not a safetensors checkpoint (unreadable header)")
            header = _parse_header(raw, name)
            _check_layout(header, size - 8 - n, name)
            data = None
            if whole:
                fh.seek(0)
                data = fh.read(size + 1)
                if len(data) != size:
                    raise CheckpointError(f"{name} changed while it was being read")
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return header, data


def _parse_header(raw: bytes, name: str) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{name} is not a safetensors checkpoint (unreadable header)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{name} is not a safetensors checkpoint (header is not an object)")
    return header


def _whole(value: Any, low: int = 0, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)


def _check_layout(header: dict, data_len: int, name: str) -> None:
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
            and all(_whole(d) for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(_whole(o) for o in info["data_offsets"])
            and info["data_offsets"][0] <= info["data_offsets"][1]
        )
        if not ok:
            raise CheckpointError(f"{name}: malformed header entry for tensor {_short(key)}")
        end = max(end, info["data_offsets"][1])
    if end > data_len:
        raise CheckpointError(
            f"{name} is truncated: its tensors need {end} bytes after the header, the file holds {data_len}"
        )


def _meta_from_header(header: dict, name: str) -> dict:
    fields = header.get("__metadata__")
    text = fields.get(META_KEY) if isinstance(fields, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"{name} is a safetensors file but not a poemtui checkpoint (no metadata)")
    try:
        meta = _from_json(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{name}: its metadata is not valid JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{name}: unknown checkpoint format {_short(found)} (expected {FORMAT})")
    _check_meta(meta, name)
    return meta


# --- what the metadata must hold (plain data: nothing in it is ever imported or evaluated) -------------


def _model_config(meta: dict, name: str):
    """The ModelConfig of a checkpoint, every field checked: PoetryLM is built from it as is."""
    from core.model import INIT_SCHEMES, ModelConfig

    m = meta["model"]
    if not _whole(m.get("vocab_size")):
        raise CheckpointError(f"{name}: model vocab_size {_short(m.get('vocab_size'))} is not a whole number")
    cfg = ModelConfig.from_dict(m)
    for key, low, high in (
        ("vocab_size", 5, MAX_WIDTH),
        ("embed_size", 1, MAX_WIDTH),
        ("hidden_size", 1, MAX_WIDTH),
        ("num_layers", 1, MAX_LAYERS),
    ):
        if not _whole(getattr(cfg, key), low, high):
            raise CheckpointError(
                f"{name}: model {key} {_short(getattr(cfg, key))} is not a whole number in [{low}, {high}]"
            )
    d = cfg.dropout
    if not (isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d < 1):
        raise CheckpointError(f"{name}: model dropout {_short(d)} is not in [0, 1)")
    if not isinstance(cfg.tie_weights, bool) or (cfg.tie_weights and cfg.embed_size != cfg.hidden_size):
        raise CheckpointError(f"{name}: model tie_weights {_short(cfg.tie_weights)} does not fit its sizes")
    if cfg.lstm_impl not in ("fused", "autograd"):
        raise CheckpointError(f"{name}: unknown lstm_impl {_short(cfg.lstm_impl)}")
    if not isinstance(cfg.init, str) or cfg.init not in INIT_SCHEMES:
        raise CheckpointError(f"{name}: unknown init {_short(cfg.init)}")
    return cfg


def _check_meta(meta: dict, name: str) -> None:
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
        raise CheckpointError(f"{name}: malformed corpus options {_short(options)}")
    for key, kind in (("fingerprint", str), ("split_seed", int)):
        if key in corpus and not isinstance(corpus[key], kind):
            raise CheckpointError(f"{name}: malformed corpus {key} {_short(corpus[key])}")
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
        if key in p and not _whole(p[key]):
            raise CheckpointError(f"{name}: progress {key} {_short(p[key])} is not a whole number")
    for key in ("best_dev_ppl", "elapsed_s", "dev_ppl", "dev_loss"):
        if key in p and not (isinstance(p[key], int | float) and not isinstance(p[key], bool)):
            raise CheckpointError(f"{name}: progress {key} {_short(p[key])} is not a number")
    best = p.get("best_path", "")
    if not isinstance(best, str) or "/" in best or "\\" in best or best in (".", ".."):
        raise CheckpointError(f"{name}: progress best_path {_short(best)} is not a file name")


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
        ok = ok and all(_whole(i) for i in group["params"]) and _settings_ok(group, skip="params")
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
            raise CheckpointError(f"{name}: malformed scheduler state ({_short(key)})")
    modes = (state.get("mode", "min"), state.get("threshold_mode", "rel"))
    if modes[0] not in ("min", "max") or modes[1] not in ("rel", "abs"):
        raise CheckpointError(f"{name}: malformed scheduler state (mode)")


def check_resumable(ckpt: Checkpoint) -> None:
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
    train = meta["train"]
    if not isinstance(train.get("corpus"), str) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in train.values()
    ):
        raise CheckpointError(f"{name} cannot be resumed: malformed training settings")


# --- what the tensors must be ----------------------------------------------------------------------------


def parameter_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """PoetryLM's parameters in the order of model.parameters() (torch optimizers number them so)."""
    v, e, h = cfg.vocab_size, cfg.embed_size, cfg.hidden_size
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (v, e)}
    for k in range(cfg.num_layers):
        shapes[f"lstm.weight_ih_l{k}"] = (4 * h, e if k == 0 else h)
        shapes[f"lstm.weight_hh_l{k}"] = (4 * h, h)
        shapes[f"lstm.bias_l{k}"] = (4 * h,)
    if not cfg.tie_weights:
        shapes["head.weight"] = (v, h)
    shapes["head.bias"] = (v,)
    return shapes


def _finite(t: torch.Tensor) -> bool:
    if not t.is_floating_point() or t.numel() == 0:
        return True
    low, high = torch.aminmax(t.detach())  # NaN propagates through min and max
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def _check_tensors(meta: dict, tensors: dict[str, torch.Tensor], name: str) -> None:
    cfg = _model_config(meta, name)
    expected = parameter_shapes(cfg)
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
    order = list(expected.values())
    _check_optimizer_keys(meta, tensors, name)
    for key, t in tensors.items():
        if key.startswith("model.") and key[len("model.") :] not in expected:
            raise CheckpointError(f"{name}: unexpected weights {_short(key[len('model.') :])}")
        if key.startswith("optim."):
            parts = key.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(order):
                raise CheckpointError(f"{name}: unexpected optimizer tensor {_short(key)}")
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


def read_meta(path: Path) -> dict:
    """The metadata alone, checked (reads only the header: fast enough to list hundreds of checkpoints)."""
    path = Path(path)
    header, _ = _read(path, whole=False)
    return _meta_from_header(header, path.name)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; every problem becomes one CheckpointError line."""
    require_torch()
    path = Path(path)
    header, data = _read(path, whole=True)
    meta = _meta_from_header(header, path.name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for every malformation
        raise CheckpointError(f"{path.name} is corrupt: {str(exc).splitlines()[0][:200]}") from exc
    except BaseException as exc:  # a Rust panic surfaces as PanicException, a BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise CheckpointError(f"{path.name} is corrupt (the safetensors reader gave up)") from exc
    del data
    _check_tensors(meta, tensors, path.name)
    digest = meta.get("tensors_sha256")
    if digest is not None and digest != tensors_digest(tensors):
        raise CheckpointError(f"{path.name} is corrupt: its tensors do not match their saved checksum")
    if str(map_location) != "cpu":
        try:
            tensors = {k: v.to(map_location) for k, v in tensors.items()}
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise CheckpointError(
                f"cannot load {path.name} onto {map_location}: {str(exc).splitlines()[0][:120]}"
            ) from exc
    return Checkpoint(path=path, meta=meta, tensors=tensors)


def checkpoint_name(epoch: int, batch: int, dev_ppl: float, optimizer: str) -> str:
    """The report's naming: rnn_<epoch>_<batch>_<dev-perplexity>_<optimizer>.safetensors"""
    return f"rnn_{epoch}_{batch}_{dev_ppl:.2f}_{optimizer}{EXT}"
