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

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from core.errors import CheckpointError
from core.paths import open_input
from core.runs.atomic import atomic_write_bytes, clean_stale_temps, is_temp
from core.runs.state_json import dumps, from_json, unflatten_optimizer
from core.runs.validate import check_layout, check_meta, check_tensors, short
from core.runs.versions import library_versions, require_torch

FORMAT = "poemtui-checkpoint/1"
EXT = ".safetensors"
META_KEY = "poemtui"
MAX_HEADER_BYTES = 16 << 20  # our header is a few hundred KB (the vocabulary); a larger one is refused
MAX_FILE_BYTES = 4 << 30  # default limit; POEMTUI_MAX_CHECKPOINT_BYTES overrides it (read at each load)


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
    cpu_meta = from_json(json.loads(dumps(meta)))  # what a reader will see
    try:
        check_meta(cpu_meta, path.name)
        check_tensors(cpu_meta, tensors, path.name)
    except CheckpointError as exc:
        raise CheckpointError(f"not saved: {exc}; {_earlier(path)}") from exc
    data = encode_checkpoint(tensors, meta)
    if len(data) > max_file_bytes():
        raise CheckpointError(
            f"{path.name} would be {len(data) >> 20} MiB, over the {max_file_bytes() >> 20} MiB limit that "
            "loading enforces (raise POEMTUI_MAX_CHECKPOINT_BYTES)"
        )
    clean_stale_temps(path.parent)
    try:
        atomic_write_bytes(path, data)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {_earlier(path)}") from exc
    return len(data)


def _earlier(path: Path) -> str:
    """What a failed save left, said only when true: earlier checkpoints, untouched (writes are atomic)."""
    try:
        earlier = [n for n in os.listdir(path.parent) if n.endswith(EXT) and not is_temp(n)]
    except OSError:
        earlier = []
    if earlier:
        return "the previous checkpoints are intact"
    return "no checkpoint was saved before this one"


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


def _sniff(head: bytes, name: str) -> None:
    """Refuse with a message that says what the file is, when its first bytes tell."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise CheckpointError(f"{name} is {what}")


def _open_regular(path: Path):
    """Open for reading; refuse anything but a regular file before reading (core.paths.open_input)."""
    if not os.path.lexists(path):
        raise CheckpointError(f"no such checkpoint: {path}")
    return open_input(path, "checkpoint", CheckpointError)


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
            check_layout(header, size - 8 - n, name)
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


def _meta_from_header(header: dict, name: str) -> dict:
    fields = header.get("__metadata__")
    text = fields.get(META_KEY) if isinstance(fields, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"{name} is a safetensors file but not a poemtui checkpoint (no metadata)")
    try:
        meta = from_json(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{name}: its metadata is not valid JSON") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{name}: unknown checkpoint format {short(found)} (expected {FORMAT})")
    check_meta(meta, name)
    return meta


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
    check_tensors(meta, tensors, path.name)
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
