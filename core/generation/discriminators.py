"""Two classifiers that try to tell generated poems from real ones, each scored by k-fold cross-validation.

    from core.generation.discriminators import discriminate
    result = discriminate(generated_texts, real_texts, seed=0)   # {"ngram": {...}, "neural": {...}}

Both see the same thing: the poem's characters, with its line breaks. Punctuation is normalised first
(each line ends "，" or "。" in turn, as the form machine writes them), because in a regular form it is
imposed by the sampler, not chosen by the model; what is left to tell the sets apart is the model's choices.

- `ngram`: logistic regression over the poem's character unigrams and bigrams (line ends and the poem's
  start and end included), log(1 + count) features scaled to unit length, L2-regularised, fitted by
  L-BFGS. The L2 strength is chosen within each training fold (an 80/20 split of it) among three values.
- `neural`: a small CNN over the poem laid out as a grid, one row a line, lines right-aligned so that the
  rhyme characters share the last column. Each cell embeds the character, its tone class (平, 仄, either,
  unknown: core.gelv) and its 平水韵 平 group, so the net can see tone patterns across lines (对, 粘) and
  rhymes down the last column as well as words. Two 3×3 convolutions (the second dilated over lines),
  max and mean pooling, a linear layer; Adam for a few epochs, the epoch kept chosen on a held-out tenth
  of the training fold.

k-fold: the pairs (generated poem i, real poem i: same start and form) are shuffled with the seed and cut
into k folds, so every fold holds both halves of its pairs and the classes stay balanced; every poem is
predicted once, by the classifier that did not train on it. Accuracy is over those 2N predictions and its
95 % interval is Wilson's score interval over them (the folds' spread is reported too). 0.5 is chance:
the classifier does no better than guessing, so in what it can see the sets do not differ.
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from core.corpus.lines import split_lines

FOLDS = 5
L2_GRID = (1e-4, 1e-3, 1e-2)
Z95 = 1.959964


# ---------------------------------------------------------------- shared


def canonical(text: str) -> str:
    """The poem with its line ends written as the form machine writes them: ，。，。 … ending in 。."""
    lines = [line for line in split_lines(text) if line]
    return "".join(
        line + ("，" if k % 2 == 0 and k < len(lines) - 1 else "。") for k, line in enumerate(lines)
    )


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def fold_ids(pairs: int, folds: int, seed: int) -> list[int]:
    """The fold of each pair, shuffled with `seed`, sizes within one of each other."""
    order = torch.randperm(pairs, generator=torch.Generator().manual_seed(seed)).tolist()
    fold = [0] * pairs
    for rank, i in enumerate(order):
        fold[i] = rank % folds
    return fold


def cross_validate(fit_predict, generated: list[str], real: list[str], folds: int, seed: int) -> dict:
    """Accuracy over held-out predictions. fit_predict(train_texts, train_labels, test_texts, seed) ->
    probabilities that each test poem is generated."""
    if len(generated) != len(real):
        raise ValueError("the two sets must be the same size (pairs)")
    n = len(generated)
    folds = max(2, min(folds, n))
    fold = fold_ids(n, folds, seed)
    texts = [canonical(t) for t in generated] + [canonical(t) for t in real]
    labels = [1] * n + [0] * n
    pair_fold = fold + fold
    correct, per_fold = 0, []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: a second thread gains little, and on a busy machine it waits
    try:
        for k in range(folds):
            train = [i for i in range(2 * n) if pair_fold[i] != k]
            test = [i for i in range(2 * n) if pair_fold[i] == k]
            probs = fit_predict(
                [texts[i] for i in train],
                [labels[i] for i in train],
                [texts[i] for i in test],
                seed * 1000 + k,
            )
            hits = sum((p > 0.5) == bool(labels[i]) for p, i in zip(probs, test, strict=True))
            correct += hits
            per_fold.append(hits / len(test))
    finally:
        torch.set_num_threads(threads)
    lo, hi = wilson(correct, 2 * n)
    return {
        "accuracy": round(correct / (2 * n), 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "interval": "Wilson, over the held-out predictions",
        "folds": folds,
        "fold_accuracy": [round(a, 4) for a in per_fold],
        "predictions": 2 * n,
    }


def _split(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(count * share))
    return order[cut:], order[:cut]


# ---------------------------------------------------------------- n-gram logistic regression


def ngrams(text: str) -> Counter:
    padded = "^" + text + "$"
    return Counter(list(text) + [padded[i : i + 2] for i in range(len(padded) - 1)])


def _features(counts: list[Counter], index: dict[str, int], seen: Counter, own: int) -> torch.Tensor:
    """Rows of log(1 + count) n-gram features scaled to unit length, then two more columns: the share of
    the poem's bigrams and of its characters that no other poem of the training fold has (`seen`: in how
    many training poems each n-gram occurs; `own`: 1 when the poem is one of them, else 0)."""
    rows, cols, vals = [], [], []
    width = len(index)
    for r, c in enumerate(counts):
        items = [(index[g], math.log1p(k)) for g, k in c.items() if g in index]
        norm = math.sqrt(sum(v * v for _, v in items)) or 1.0
        for j, v in items:
            rows.append(r)
            cols.append(j)
            vals.append(v / norm)
        for j, size in ((width, 2), (width + 1, 1)):
            grams = [g for g in c if len(g) == size]
            rows.append(r)
            cols.append(j)
            vals.append(sum(seen[g] <= own for g in grams) / max(len(grams), 1))
    return torch.sparse_coo_tensor(
        torch.tensor([rows, cols], dtype=torch.long),
        torch.tensor(vals, dtype=torch.float32),
        (len(counts), width + 2),
        check_invariants=False,
    ).coalesce()


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float, iterations: int = 60) -> torch.Tensor:
    """Weights (bias last) of an L2-regularised logistic regression, by L-BFGS."""
    w = torch.zeros(x.shape[1] + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.sparse.mm(x, w[:-1, None]).squeeze(1) + w[-1]
        loss = F.binary_cross_entropy_with_logits(logits, y) + 0.5 * l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _predict_lr(x: torch.Tensor, w: torch.Tensor) -> list[float]:
    return torch.sigmoid(torch.sparse.mm(x, w[:-1, None]).squeeze(1) + w[-1]).tolist()


def ngram_fit_predict(train: list[str], labels: list[int], test: list[str], seed: int) -> list[float]:
    counts = [ngrams(t) for t in train]
    seen = Counter(g for c in counts for g in c)
    index = {g: i for i, g in enumerate(sorted(g for g, k in seen.items() if k >= 2))}
    x, y = _features(counts, index, seen, 1), torch.tensor(labels, dtype=torch.float32)
    fit_idx, val_idx = _split(len(train), 0.2, seed)
    best, best_acc = L2_GRID[0], -1.0
    for l2 in L2_GRID:  # the strength that does best on a fifth of the training fold
        w = _logistic(_rows(x, fit_idx), y[fit_idx], l2)
        probs = _predict_lr(_rows(x, val_idx), w)
        acc = sum((p > 0.5) == bool(labels[i]) for p, i in zip(probs, val_idx, strict=True)) / len(val_idx)
        if acc > best_acc:
            best, best_acc = l2, acc
    w = _logistic(x, y, best)
    return _predict_lr(_features([ngrams(t) for t in test], index, seen, 0), w)


def _rows(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
    return torch.index_select(x, 0, torch.tensor(idx, dtype=torch.long)).coalesce()


# ---------------------------------------------------------------- neural: a CNN over the poem's grid

MAX_LINES, MAX_COLS = 16, 12
TONE_IDS = {"平": 1, "仄": 2, "中": 3, "？": 4}


class Grid:
    """Poems as (lines × columns) grids of character, tone, rhyme-group and rhyme ids, lines right-aligned."""

    def __init__(self, texts: list[str]):
        freq = Counter(ch for t in texts for line in split_lines(t) for ch in line)
        self.chars = {ch: i + 2 for i, ch in enumerate(sorted(c for c, k in freq.items() if k >= 2))}

    def encode(self, texts: list[str]) -> torch.Tensor:
        """[B, 4, lines, columns]: character (1: one seen once in training), then `prosody_cells`."""
        out = torch.zeros(len(texts), 4, MAX_LINES, MAX_COLS, dtype=torch.long)
        for b, text in enumerate(texts):
            lines = _grid_lines(text)
            for r, line in enumerate(lines):
                out[b, 0, r, MAX_COLS - len(line) :] = torch.tensor([self.chars.get(ch, 1) for ch in line])
            out[b, 1:, : len(lines)] = prosody_cells(text)
        return out


def _grid_lines(text: str) -> list[str]:
    return [x[-MAX_COLS:] for x in split_lines(text) if x][:MAX_LINES]


@functools.lru_cache(maxsize=8192)
def prosody_cells(text: str) -> torch.Tensor:
    """[3, lines, MAX_COLS]: tone class, first 平 group, and at each line's end whether it rhymes (shares a
    平 group) with the end of the line two before (1: no such line, 2: it does, 3: it does not). Cached:
    every fold encodes the same poems."""
    from core.gelv import Gelv

    gelv = Gelv.load()
    lines = _grid_lines(text)
    out = torch.zeros(3, len(lines), MAX_COLS, dtype=torch.long)
    ends: list[frozenset] = []
    for r, line in enumerate(lines):
        for k, ch in enumerate(line):
            c = MAX_COLS - len(line) + k
            groups = gelv.ping_groups(ch)
            out[0, r, c] = TONE_IDS[gelv.reading(ch)]
            out[1, r, c] = _group_ids()[min(groups)] if groups else 0
        ends.append(gelv.ping_groups(line[-1]))
        out[2, r, MAX_COLS - 1] = 1 if r < 2 else 2 if ends[r] & ends[r - 2] else 3
    return out


@functools.cache
def _group_ids() -> dict[str, int]:
    from core.gelv import Gelv

    return {g: i + 1 for i, g in enumerate(Gelv.load().table.ping_group_names)}


class GridCNN(nn.Module):
    def __init__(self, chars: int, groups: int, width: int = 32):
        super().__init__()
        self.char = nn.Embedding(chars, 16, padding_idx=0)
        self.tone = nn.Embedding(len(TONE_IDS) + 1, 8, padding_idx=0)
        self.group = nn.Embedding(groups, 8, padding_idx=0)
        self.rhyme = nn.Embedding(4, 4, padding_idx=0)
        self.conv1 = nn.Conv2d(36, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=(2, 1), dilation=(2, 1))
        self.drop_in = nn.Dropout(0.1)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        present = (x[:, 0] > 0).unsqueeze(1).float()  # B,1,R,C
        e = torch.cat(
            [self.char(x[:, 0]), self.tone(x[:, 1]), self.group(x[:, 2]), self.rhyme(x[:, 3])], dim=-1
        )
        h = self.drop_in(e.permute(0, 3, 1, 2))
        h = F.relu(self.conv1(h))
        h = F.relu(self.conv2(h)) * present
        mean = h.sum(dim=(2, 3)) / present.sum(dim=(2, 3)).clamp(min=1)
        big = h.masked_fill(present == 0, -1e4).amax(dim=(2, 3))
        return self.out(self.drop(torch.cat([big, mean], dim=1))).squeeze(1)


def neural_fit_predict(
    train: list[str],
    labels: list[int],
    test: list[str],
    seed: int,
    epochs: int = 15,
    batch: int = 64,
    min_steps: int = 120,
    patience: int = 3,
) -> list[float]:
    """Adam for up to `epochs` epochs (at least `min_steps` steps: small folds need more passes); the
    weights of the epoch with the lowest loss on a held-out tenth of the training fold are kept, and
    training stops `patience` epochs after it once the minimum is done."""
    torch.manual_seed(seed)
    grid = Grid(train)
    x, y = grid.encode(train), torch.tensor(labels, dtype=torch.float32)
    fit_idx, val_idx = _split(len(train), 0.1, seed)
    fit_x, fit_y, val_x, val_y = x[fit_idx], y[fit_idx], x[val_idx], y[val_idx]
    rows, cols = _extent(x)
    model = GridCNN(len(grid.chars) + 2, len(_group_ids()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    best_loss, best_state, since, steps = math.inf, None, 0, 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(fit_idx), generator=gen).split(batch):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(fit_x[idx][..., :rows, -cols:]), fit_y[idx])
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        with torch.no_grad():
            val = F.binary_cross_entropy_with_logits(model(val_x[..., :rows, -cols:]), val_y).item()
        if val < best_loss:
            best_loss, best_state, since = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since += 1
            if since >= patience and steps >= min_steps:
                break
    model.load_state_dict(best_state)
    model.eval()
    tx = grid.encode(test)
    with torch.no_grad():
        return torch.sigmoid(model(tx[..., :rows, -cols:])).tolist()


def _extent(x: torch.Tensor) -> tuple[int, int]:
    """Rows and columns any poem uses (the grid is cut to them: most poems need 8 × 7)."""
    used = x[:, 0] > 0
    rows = int(used.any(dim=(0, 2)).nonzero().max()) + 1 if used.any() else 1
    cols = MAX_COLS - int(used.any(dim=(0, 1)).nonzero().min()) if used.any() else 1
    return rows, cols


# ---------------------------------------------------------------- both


def discriminate(
    generated: list[str], real: list[str], seed: int = 0, folds: int = FOLDS, on_stage=None
) -> dict:
    """Both discriminators on the same folds: {"ngram": {...}, "neural": {...}}; on_stage(name) before each"""
    import time

    out = {}
    for name, fit in (("ngram", ngram_fit_predict), ("neural", neural_fit_predict)):
        if on_stage is not None:
            on_stage(name)
        t0 = time.perf_counter()
        out[name] = cross_validate(fit, generated, real, folds, seed)
        out[name]["seconds"] = round(time.perf_counter() - t0, 2)
    return out
