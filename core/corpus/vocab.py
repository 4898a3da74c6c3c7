"""Characters <-> ids. Built from the train split only; the order is fixed so a rebuilt vocabulary matches.

Ids: <pad>=0 <bos>=1 <eos>=2 <unk>=3, then characters by descending train frequency, ties by code point.
The vocabulary travels inside every checkpoint as `to_json()`, so generation never rebuilds it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
FORMAT = "poemtui-vocab/1"


class Vocab:
    def __init__(self, itos: list[str]):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {', '.join(SPECIALS)}")
        if len(set(itos)) != len(itos):
            raise ValueError("a vocabulary lists each token once")
        if not all(isinstance(t, str) and len(t) == 1 for t in itos[len(SPECIALS) :]):
            raise ValueError("vocabulary entries after the specials are single characters")
        self.itos = list(itos)
        self.stoi = {token: i for i, token in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> Vocab:
        """Characters of texts seen at least min_freq times, most frequent first, ties by code point."""
        counts = Counter()
        for text in texts:
            counts.update(text)
        kept = [ch for ch, n in counts.items() if n >= min_freq]
        kept.sort(key=lambda ch: (-counts[ch], ord(ch)))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __contains__(self, ch: str) -> bool:
        return ch in self.stoi and self.stoi[ch] >= len(SPECIALS)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of text (no <bos>/<eos> added); unknown characters become <unk>."""
        get = self.stoi.get
        return [get(ch, UNK) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ids; specials (<pad> <bos> <eos> <unk>) are dropped."""
        n_special = len(SPECIALS)
        return "".join(self.itos[i] for i in map(int, ids) if i >= n_special)

    def to_json(self) -> dict:
        return {"format": FORMAT, "itos": self.itos}

    @classmethod
    def from_json(cls, d: dict) -> Vocab:
        """Raises ValueError on anything but to_json()'s output (the caller names the file)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("itos"), list):
            raise ValueError(f"not a {FORMAT} vocabulary")
        return cls(d["itos"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
