"""Library versions: the minimum torch we accept, and what a checkpoint records about its makers."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from core.errors import PoemError

# torch < 2.10: weights_only loaders with CVE-2025-32434 and CVE-2026-24747 (code execution, memory
# corruption).
MIN_TORCH = (2, 10)


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require_torch(installed: str | None = None) -> str:
    """Return the installed torch version, or raise PoemError when it is older than MIN_TORCH."""
    if installed is None:
        try:
            installed = version("torch")
        except PackageNotFoundError as exc:
            raise PoemError("torch is not installed: run `make setup` (see README.md)") from exc
    if _release(installed)[:2] < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise PoemError(
            f"torch {installed} is too old: poemtui needs torch >= {need} "
            "(older weights_only loaders allow code execution, CVE-2025-32434 / CVE-2026-24747)"
        )
    return installed


def library_versions() -> dict[str, str]:
    """Versions recorded inside every checkpoint, for reproducibility."""
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "safetensors", "opencc"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    from core import __version__

    out["poemtui"] = __version__
    return out
