"""Units that track something: hidden units whose activation follows a property of the text, found as
Karpathy, Johnson and Fei-Fei (2015) found their line-length and quote cells, by looking at activations
over real text. Here, over (a sample of) the checkpoint's dev split, each unit's cell state C_t and hidden
state h_t is correlated (Pearson) with three targets at every step t (the state after reading character t):

    line_position   content characters of the current line read so far (0 after a line end or <bos>)
    line_index      line ends read so far: 0 in the first line, 1 in the second, …
    rhyme_next      1 when the next character closes an even line (lines 2, 4, …: a rhyme position), else 0
    poem_position   characters read so far: a control, since a unit that merely counts time correlates
                    with the line index too (compare both before calling a unit a line counter)

(rhyme_next is a binary target, so its Pearson correlation is the point-biserial one.) The result is cached
next to the checkpoint, `<run>/.inspect/units-<digest>.json`, keyed by the digest of its tensors (a `best`
link and its `rnn_*` file share it), so the workbench computes it once per checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from core.corpus.lines import LINE_ENDS
from core.corpus.vocab import BOS, EOS
from core.inspection.trace import step_states

LABELS = {
    "line_position": "position in the line",
    "line_index": "line index",
    "rhyme_next": "next character is a rhyme position",
    "poem_position": "characters read (a control)",
}
VERSION = 2  # of the cached result's meaning: bump when the targets or the sample change
MAX_POEMS = 300
TOP = 3  # units reported per target


def targets(poem: str) -> dict[str, list[float]]:
    """Each target at the steps of `<bos> c1 … cn` (n + 1 steps: the state after reading each input)."""
    place, line = 0, 0
    out: dict[str, list[float]] = {name: [0.0] for name in LABELS}  # step 0: after <bos>
    for t, ch in enumerate(poem, start=1):
        if ch in LINE_ENDS:
            place, line = 0, line + 1
        else:
            place += 1
        out["line_position"].append(float(place))
        out["line_index"].append(float(line))
        out["rhyme_next"].append(float(_closes_even_line(poem, t, line)))
        out["poem_position"].append(float(t))
    return out


def _closes_even_line(poem: str, t: int, line: int) -> bool:
    """Does poem[t] (the next character after step t) end line `line` (0-based) and is that line even-
    numbered (1-based: 2, 4, …)?"""
    return (
        t < len(poem)
        and poem[t] not in LINE_ENDS
        and t + 1 < len(poem)
        and poem[t + 1] in LINE_ENDS
        and (line % 2 == 1)
    )


def pearson(states: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each column of states [N, U] with target [N] (0 for a constant column)."""
    x = states - states.mean(0)
    y = target - target.mean()
    denominator = torch.linalg.vector_norm(x, dim=0) * torch.linalg.vector_norm(y)
    return torch.where(denominator > 0, (x * y[:, None]).sum(0) / denominator.clamp(min=1e-300), 0.0)


def sample_poems(poems: list[str], limit: int = MAX_POEMS, seed: int = 0) -> list[str]:
    if len(poems) <= limit:
        return list(poems)
    return random.Random(seed).sample(poems, limit)


def find_units(model, vocab, poems: list[str], *, top: int = TOP, batch: int = 32) -> dict:
    """The `top` units (layer, unit, state c or h) with the largest |correlation| per target, over poems."""
    model = model.eval()
    poems = sorted(poems, key=len)
    columns: dict[str, list[torch.Tensor]] = {"c": [], "h": []}
    wanted: dict[str, list[float]] = {name: [] for name in LABELS}
    with torch.no_grad():
        for start in range(0, len(poems), batch):
            chunk = poems[start : start + batch]
            longest = max(len(p) for p in chunk) + 1
            ids = torch.full((len(chunk), longest), EOS, dtype=torch.long)
            for row, poem in enumerate(chunk):
                ids[row, : len(poem) + 1] = torch.tensor([BOS, *vocab.encode(poem)])
            trace = step_states(model, ids.to(model.embedding.weight.device))
            for row, poem in enumerate(chunk):
                steps = len(poem) + 1
                for state in ("c", "h"):
                    columns[state].append(
                        torch.cat([g[state][row, :steps] for g in trace.gates], dim=1).double()
                    )
                for name, values in targets(poem).items():
                    wanted[name] += values
    H = model.cfg.hidden_size
    found = []
    for name, values in wanted.items():
        y = torch.tensor(values, dtype=torch.float64)
        ranked = []
        for state, parts in columns.items():
            r = pearson(torch.cat(parts).cpu(), y)
            ranked += [(abs(float(v)), float(v), state, j) for j, v in enumerate(r)]
        ranked.sort(reverse=True)
        for _, r, state, j in ranked[:top]:
            found.append({"label": name, "layer": j // H, "unit": j % H, "state": state, "correlation": r})
    return {"units": found, "poems": len(poems), "steps": len(wanted["line_index"])}


def cache_path(checkpoint: Path, meta: dict) -> Path | None:
    digest = meta.get("tensors_sha256")
    if not isinstance(digest, str):
        return None
    return Path(checkpoint).parent / ".inspect" / f"units-{digest[:16]}.json"


def tracking_units(checkpoint: Path, model, vocab, meta: dict, *, limit: int = MAX_POEMS) -> dict:
    """find_units over the checkpoint's dev split (a sample of `limit` poems), from the cache when it holds
    them; the result says which corpus and split, and whether it came from the cache."""
    path = cache_path(checkpoint, meta)
    if path is not None and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("version") == VERSION and cached.get("limit") == limit:
                return {**cached, "cached": True}
        except (OSError, ValueError):
            pass
    from core.corpus import load_recorded_corpus

    corpus = load_recorded_corpus(meta["corpus"])
    split = "dev" if corpus.splits.get("dev") else "train"
    result = find_units(model, vocab, sample_poems(corpus.splits[split], limit))
    result.update({"version": VERSION, "limit": limit, "corpus": corpus.name, "split": split})
    if path is not None:
        try:
            from core.runs.atomic import atomic_write_bytes

            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, json.dumps(result, ensure_ascii=False).encode("utf-8"))
        except OSError:
            pass  # a read-only folder: computed again next time
    return {**result, "cached": False}
