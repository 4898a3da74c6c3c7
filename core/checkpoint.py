"""Checkpoints: one self-contained safetensors file per save, written atomically, loaded without running code.

A checkpoint holds tensors (weights, optimizer state, RNG states) and one JSON metadata entry (model config,
vocabulary, corpus, progress, optimizer hyper-parameters, library versions). safetensors is a flat header +
raw bytes: there is no pickle anywhere, so a hostile file can at worst be refused. We never call torch.load.

Writes go to a temporary file in the same folder, are fsynced, renamed over the target with os.replace and
the folder is fsynced: a process killed at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
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
MAX_FILE_BYTES = int(os.environ.get("POEMTUI_MAX_CHECKPOINT_BYTES", 4 << 30))
TMP_PREFIX = ".tmp-"  # temporary files start with this; listings skip them


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


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers only ever see the old file or the complete new one."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path}: {exc.strerror or exc}; the previous checkpoints are intact"
        ) from exc
    _fsync_dir(path.parent)


def atomic_link(src: Path, dst: Path) -> None:
    """Make `dst` a complete copy of `src` atomically (a hard link when the filesystem allows it)."""
    tmp = dst.with_name(f"{TMP_PREFIX}{os.getpid()}-{dst.name}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            atomic_write_bytes(tmp, Path(src).read_bytes())
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not update {dst}: {exc.strerror or exc}") from exc
    _fsync_dir(dst.parent)


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as independent CPU tensors (a tied head is stored once, as the embedding)."""
    tied = getattr(getattr(model, "cfg", None), "tie_weights", False)
    return {
        f"model.{k}": v.detach().to("cpu", copy=True).contiguous()
        for k, v in model.state_dict().items()
        if not (tied and k == "head.weight")
    }


def encode_checkpoint(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    meta = {"format": FORMAT, "saved_at": time.time(), "versions": library_versions(), **meta}
    return st_save(tensors, metadata={META_KEY: dumps(meta)})


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> int:
    """Serialise and write atomically; returns the file size in bytes."""
    data = encode_checkpoint(tensors, meta)
    atomic_write_bytes(Path(path), data)
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
        return None if info is None else unflatten_optimizer(self.tensors, info)

    @property
    def model_config(self):
        from core.model import ModelConfig

        return ModelConfig.from_dict(self.meta["model"])

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


def _sniff(head: bytes, path: Path) -> None:
    """Refuse pickles by their signature. A safetensors file has its JSON header's "{" at byte 8 (its
    first 8 bytes are a length, so they may begin with any byte, 0x80 included)."""
    if head[8:9] == b"{":
        return
    if head[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{path.name} is a torch.save/zip archive: it holds pickled code, which poemtui never loads "
            "(poemtui checkpoints are .safetensors)"
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{path.name} is a Python pickle: poemtui never unpickles (it can run code)")


def _open_header(path: Path) -> tuple[int, dict, int]:
    """Validate size, magic and header of a checkpoint; returns (header length, header, file size)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise CheckpointError(f"{path} is not a file")
        with open(path, "rb") as fh:
            head = fh.read(9)
            _sniff(head, path)
            head = head[:8]
            if len(head) < 8:
                raise CheckpointError(f"{path.name} is empty or truncated ({size} bytes)")
            if size > MAX_FILE_BYTES:
                raise CheckpointError(
                    f"{path.name} is {size >> 20} MiB, over the {MAX_FILE_BYTES >> 20} MiB limit"
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path.name}: header of {n} bytes exceeds the {MAX_HEADER_BYTES} byte limit"
                )
            if 8 + n > size:
                raise CheckpointError(f"{path.name} is truncated (header says {n} bytes, file has {size})")
            fh.seek(8)
            raw = fh.read(n)
    except FileNotFoundError as exc:
        raise CheckpointError(f"no such checkpoint: {path}") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{path} is a folder, not a checkpoint") from exc
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {path}: permission denied") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.name} is not a safetensors checkpoint (unreadable header)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name} is not a safetensors checkpoint (header is not an object)")
    return n, header, size


def _parse_meta(header: dict, path: Path) -> dict:
    text = (
        (header.get("__metadata__") or {}).get(META_KEY)
        if isinstance(header.get("__metadata__"), dict)
        else None
    )
    if not isinstance(text, str):
        raise CheckpointError(f"{path.name} is a safetensors file but not a poemtui checkpoint (no metadata)")
    try:
        meta = _from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path.name}: its metadata is not valid JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path.name}: unknown checkpoint format {found!r} (expected {FORMAT})")
    for key in ("model", "vocab", "corpus", "progress"):
        if not isinstance(meta.get(key), dict | list):
            raise CheckpointError(f"{path.name}: metadata lacks {key!r}")
    return meta


def read_meta(path: Path) -> dict:
    """The metadata alone (reads only the header: fast enough to list hundreds of checkpoints)."""
    path = Path(path)
    _, header, _ = _open_header(path)
    return _parse_meta(header, path)


def _check_model_tensors(meta: dict, tensors: dict[str, torch.Tensor], path: Path) -> None:
    from core.model import ModelConfig

    try:
        cfg = ModelConfig.from_dict(meta["model"])
        vocab_size = int(cfg.vocab_size)
        e, h, layers = int(cfg.embed_size), int(cfg.hidden_size), int(cfg.num_layers)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path.name}: malformed model config ({exc})") from exc
    from core.corpus.vocab import Vocab

    try:
        vocab = Vocab.from_json(meta["vocab"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path.name}: malformed vocabulary ({exc})") from exc
    if len(vocab) != vocab_size:
        raise CheckpointError(
            f"{path.name}: vocabulary has {len(vocab)} entries but the model expects {vocab_size}"
        )
    expected = {"model.embedding.weight": (vocab_size, e), "model.head.bias": (vocab_size,)}
    if not cfg.tie_weights:
        expected["model.head.weight"] = (vocab_size, h)
    for k in range(layers):
        expected[f"model.lstm.weight_ih_l{k}"] = (4 * h, e if k == 0 else h)
        expected[f"model.lstm.weight_hh_l{k}"] = (4 * h, h)
        expected[f"model.lstm.bias_l{k}"] = (4 * h,)
    for name, shape in expected.items():
        t = tensors.get(name)
        if t is None:
            raise CheckpointError(f"{path.name}: missing weights {name[6:]}")
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{path.name}: {name[6:]} has shape {tuple(t.shape)}, expected {shape}")
        if not t.is_floating_point():
            raise CheckpointError(f"{path.name}: {name[6:]} is {t.dtype}, not a float tensor")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{path.name}: {name[6:]} contains NaN or Inf")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; every problem becomes one CheckpointError line."""
    require_torch()
    path = Path(path)
    _, header, _ = _open_header(path)
    meta = _parse_meta(header, path)
    try:
        tensors = st_load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for every malformation
        raise CheckpointError(f"{path.name} is corrupt: {str(exc).splitlines()[0][:200]}") from exc
    _check_model_tensors(meta, tensors, path)
    if map_location != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return Checkpoint(path=path, meta=meta, tensors=tensors)


def checkpoint_name(epoch: int, batch: int, dev_ppl: float, optimizer: str) -> str:
    """The report's naming: rnn_<epoch>_<batch>_<dev-perplexity>_<optimizer>.safetensors"""
    return f"rnn_{epoch}_{batch}_{dev_ppl:.2f}_{optimizer}{EXT}"
