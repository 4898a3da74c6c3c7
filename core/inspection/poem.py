"""One poem through a checkpoint, everything `python -m core.inspect` and the workbench's Inspect screen show:

    insight = Inspector.load(path)                  # the checkpoint, in float64 (exact gradients to compare)
    result = insight.inspect("白日依山尽，黄河入海流。")   # the JSON object of DESIGN.md's inspect keys

Keys: `chars` (the poem's characters, normalised like the corpus), `surprisal` (−log p of each character
given the ones before it, nats), `top5` (at each character: the five predictions the model made for that
place, [character, probability]), `gates` (per layer: `units` and, for each of them, `i`, `f`, `o`, `c`
(and `g`, `h`) at every step: step t has read `inputs[t]`, `<bos>` first, and predicts `chars[t]`),
`units` (the units that track the line position, line index and rhyme position: label, layer, unit,
state, correlation; core.inspection.units), `grad_norms` (‖∂L/∂h_t‖ of the top layer at steps 0 … j for
L = −log p(c_j), c_j the poem's last character before its closing mark, predicted at step j: Part 1's
backward, core.inspection.trace.bptt_norms, checked against autograd), and more besides.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from core.corpus import normalize_text
from core.corpus.lines import LINE_ENDS
from core.corpus.vocab import BOS, EOS, UNK
from core.errors import PoemError
from core.inspection.trace import autograd_norms, bptt_norms, trace_poem
from core.inspection.units import tracking_units

MAX_CHARS = 1000
LINE_MARKS = set(LINE_ENDS)
UNITS_PER_LAYER = 4


@dataclass
class Inspector:
    path: Path
    model: object  # PoetryLM, float64, eval mode
    vocab: object
    meta: dict
    script: str = "simplified"

    @classmethod
    def load(cls, path: Path) -> Inspector:
        from core.runs.checkpoint import load_checkpoint
        from core.runs.folder import resolve_checkpoint

        path = resolve_checkpoint(Path(path))
        ckpt = load_checkpoint(path)
        model = copy.deepcopy(ckpt.build_model("cpu")).double().eval()
        script = ckpt.meta.get("corpus", {}).get("options", {}).get("script", "simplified")
        return cls(path, model, ckpt.vocab, ckpt.meta, script)

    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def units(self, limit: int | None = None) -> dict:
        """The tracking units of this checkpoint (cached next to it after the first time)."""
        kwargs = {} if limit is None else {"limit": limit}
        return tracking_units(self.path, self.model, self.vocab, self.meta, **kwargs)

    def prepare(self, text: str) -> str:
        poem = normalize_text(text or "", script=self.script)
        if not poem:
            raise PoemError("type or paste a poem to inspect")
        if len(poem) > MAX_CHARS:
            raise PoemError(f"the poem has {len(poem)} characters; inspect at most {MAX_CHARS}")
        return poem

    def token(self, i: int) -> str:
        return self.vocab.itos[i]

    def inspect(
        self, text: str, *, units: dict | None = None, select: list[tuple[int, int]] | None = None
    ) -> dict:
        """The inspect object for `text` (module docstring). `units`: a tracking_units result (None: found
        or read from the cache now; {} to skip); `select`: (layer, unit) pairs for `gates` (None: the
        tracking units, then the units whose cell state varies most over this poem)."""
        poem = self.prepare(text)
        ids = [BOS, *self.vocab.encode(poem)]
        n = len(poem)
        trace = trace_poem(self.model, ids)
        log_p = torch.log_softmax(trace.logits[0], dim=-1)  # [n + 1, V]
        targets = [*ids[1:], EOS]
        surprisal = [-float(log_p[t, targets[t]]) for t in range(n + 1)]
        probs = log_p.exp()
        top5 = []
        for t in range(n + 1):
            p, which = probs[t].topk(5)
            top5.append([[self.token(int(i)), float(q)] for q, i in zip(p, which, strict=True)])
        if units is None:
            units = self.units()
        chosen = self._select(trace, units.get("units", []), select)
        gates = []
        for k, layer in enumerate(trace.gates):
            mine = [u for layer_k, u in chosen if layer_k == k]
            entry: dict = {"layer": k, "units": mine}
            for name in ("i", "f", "o", "c", "g", "h"):
                entry[name] = [[round(float(v), 6) for v in layer[name][0, :, u]] for u in mine]
            gates.append(entry)
        step = last_content(poem)  # the loss of the last character (its closing mark skipped) ...
        target = ids[step + 1]  # ... predicted at the step that read the character before it
        by_layer = bptt_norms(self.model, trace, step, target)
        check = autograd_norms(self.model, ids, step, target)
        error = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(by_layer[-1], check, strict=True))
        with torch.no_grad():
            fused, _ = self.model(torch.tensor([ids]))
        return {
            "checkpoint": str(self.path),
            "poem": poem,
            "chars": list(poem),
            "unknown": [i for i, t in enumerate(ids[1:]) if t == UNK],
            "inputs": [self.token(BOS), *poem],
            "surprisal": surprisal[:n],
            "eos_surprisal": surprisal[n],
            "perplexity": math.exp(sum(surprisal) / (n + 1)),
            "top5": top5[:n],
            "next_top5": top5[n],
            "gates": gates,
            "units": units.get("units", []),
            "units_found_on": {k: units.get(k) for k in ("corpus", "split", "poems", "steps", "cached")},
            "grad_norms": by_layer[-1],
            "grad_norms_layers": by_layer,
            "grad_target": {"step": step, "char": poem[step], "index": step},
            "grad_check_max_rel_error": error,
            "fused_max_abs_diff": float((fused[0] - trace.logits[0]).abs().max()),
            "layers": len(trace.gates),
            "hidden_size": self.model.cfg.hidden_size,
        }

    def _select(self, trace, found: list[dict], select) -> list[tuple[int, int]]:
        layers, H = len(trace.gates), self.model.cfg.hidden_size
        if select is not None:
            bad = [f"{k}:{u}" for k, u in select if not (0 <= k < layers and 0 <= u < H)]
            if bad:
                raise PoemError(f"no unit {', '.join(bad)}: this model has {layers} layer(s) of {H} units")
            return list(dict.fromkeys(select))
        chosen: list[tuple[int, int]] = []
        for u in found:
            pair = (u["layer"], u["unit"])
            if pair not in chosen and sum(k == pair[0] for k, _ in chosen) < UNITS_PER_LAYER:
                chosen.append(pair)
        for k, layer in enumerate(trace.gates):
            spread = layer["c"][0].std(dim=0) if layer["c"].shape[1] > 1 else layer["c"][0, 0].abs()
            for u in spread.argsort(descending=True).tolist():
                if sum(layer_k == k for layer_k, _ in chosen) >= UNITS_PER_LAYER:
                    break
                if (k, u) not in chosen:
                    chosen.append((k, u))
        return sorted(chosen)


def last_content(poem: str) -> int:
    """The index of the poem's last character that is not a line-closing mark (predicting 。 after a full
    line is the easy part; the last word is what a long memory is for), or its last index."""
    for i in range(len(poem) - 1, -1, -1):
        if poem[i] not in LINE_MARKS:
            return i
    return len(poem) - 1
