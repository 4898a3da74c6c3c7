"""Deterministic train/dev/test splits by whole poem, and the guard that keeps tang300 dev out of training.

Each poem gets a rank: sha256 of the split seed and its raw source text (its paragraphs as the package
gives them, before any cleaning or t2s: both scripts split alike, and a change to the cleaning rules
hardly moves a poem between splits). The lowest ranks form train, the next dev, the rest test; the
sizes are exact (tang300: 256/64).
Nothing here depends on Python's hash() or on the order poems are read in, so every process, machine
and Python version gets the same split.
"""

from __future__ import annotations

import hashlib

from core.corpus.lines import split_lines

SPLIT_SEED = 2019
SPLIT_NAMES = ("train", "dev", "test")
FRACTIONS = {
    "tang300": (0.8, 0.2, 0.0),  # the assignment's split: 256 / 64
    "quantangshi": (0.9, 0.05, 0.05),
}
USER_FRACTIONS_LARGE = (0.9, 0.05, 0.05)  # a user's file of 100 poems or more
USER_FRACTIONS_SMALL = (0.8, 0.2, 0.0)  # fewer: a test split would be too small to mean anything
USER_LARGE_MIN = 100
MIN_OVERLAP_LINE = 5


def fractions_for(name: str, n_poems: int) -> tuple[float, float, float]:
    if name in FRACTIONS:
        return FRACTIONS[name]
    return USER_FRACTIONS_LARGE if n_poems >= USER_LARGE_MIN else USER_FRACTIONS_SMALL


def split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Exact sizes; dev (and test, when asked for) get at least one poem once there are enough poems."""
    _, f_dev, f_test = fractions
    n_dev = max(round(n * f_dev), 1 if f_dev and n >= 2 else 0)
    n_test = max(round(n * f_test), 1 if f_test and n >= 3 else 0)
    return n - n_dev - n_test, n_dev, n_test


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\n{key}".encode()).digest()


def split_poems(
    texts: list[str], keys: list[str], fractions: tuple[float, float, float], seed: int = SPLIT_SEED
) -> dict[str, list[str]]:
    """texts[i] goes to a split decided by keys[i]; each split keeps the source order."""
    order = sorted(range(len(texts)), key=lambda i: (_rank(seed, keys[i]), i))
    n_train, n_dev, _ = split_sizes(len(texts), fractions)
    bounds = {"train": (0, n_train), "dev": (n_train, n_train + n_dev), "test": (n_train + n_dev, len(texts))}
    return {name: [texts[i] for i in sorted(order[lo:hi])] for name, (lo, hi) in bounds.items()}


def overlaps(text: str, texts: set[str], lines: set[str]) -> bool:
    return text in texts or any(line in lines for line in split_lines(text))


def remove_overlap(poems: list[str], guarded: list[str]) -> tuple[list[str], int]:
    """poems minus those equal to a guarded poem or sharing with one a line of 5+ characters."""
    texts = set(guarded)
    lines = {line for text in guarded for line in split_lines(text) if len(line) >= MIN_OVERLAP_LINE}
    kept = [text for text in poems if not overlaps(text, texts, lines)]
    return kept, len(poems) - len(kept)
