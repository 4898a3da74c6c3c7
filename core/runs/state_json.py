"""Optimizer and scheduler state as safetensors can hold it: tensors by name, the rest as JSON that keeps
inf and nan (ReduceLROnPlateau starts with `best = inf`)."""

from __future__ import annotations

import json
import math
from typing import Any

import torch


def to_json(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return to_json(obj.item())
    return obj


_SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def from_json(obj: Any) -> Any:
    """Undo to_json. Only the three spellings it writes become floats; anything else stays data."""
    if isinstance(obj, dict):
        spelling = obj.get("__float__")
        if len(obj) == 1 and isinstance(spelling, str) and spelling in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[spelling]
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_json(obj), ensure_ascii=False, allow_nan=False)


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
                scalars.setdefault(str(pid), {})[key] = to_json(value)
    return tensors, {"param_groups": to_json(state_dict["param_groups"]), "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in info.get("scalars", {}).items():
        for key, value in entries.items():
            value = from_json(value)
            # torch keeps `step` as a 0-d float tensor; restore that type exactly
            state.setdefault(int(pid), {})[key] = torch.tensor(float(value)) if key == "step" else value
    return {"state": state, "param_groups": from_json(info["param_groups"])}
