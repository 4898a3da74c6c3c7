"""The judge: poems sampled from a checkpoint next to real poems of its corpus, and two discriminators.

    from core.generation.judge import Judge
    judge = Judge.load("checkpoints/RUN", poems=1000, seed=0)     # real poems: the test split (dev if none)
    report = judge.run(SampleSettings(temperature=1.0, top_p=1.0))  # {"generated", "real", …}

Real poems: N drawn at random (with the seed) from the checkpoint's own corpus (its recorded name and
options), test split, dev where there is none; a poem whose first character the model does not know is
passed over. Generated poem i takes real poem i's first character as its start and its form: 4 or 8 lines
of 5 or 7 characters give form 5|7 with that many lines; any other shape gives form `free` (the model's own
lines) and no prosody. Poems are sampled in one batch per form.

Figures of each set (`set_metrics`): valid_form, rhyme_rate, gelv_passed, tone_conformity (core.gelv: rhyme
and tone over the regular poems, passed over all), distinct_1/2 (over all N poems: distinct characters
and within-line bigrams over all of them), copy_rate (lines of ≥ 5 characters found in the train split),
mean_length (characters, punctuation excluded), repeated_line, mean_logprob (the model's log-probability
per character after the start, punctuation included: of the sampled characters for the generated poems,
of the real characters, teacher-forced, for the real ones), and char_js_divergence (Jensen-Shannon, bits,
of the character distributions): generated vs real for the generated; for the real poems, real vs N other
real poems (the dev split, or train): the value sampling noise alone gives.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

from core.corpus.lines import split_lines
from core.errors import PoemError
from core.generation.quality import copy_rate, distinct_2, has_repeated_line, is_valid_form
from core.generation.settings import SampleSettings

# what the judge takes from the real poems rather than from the settings
PER_POEM = ("start", "form", "lines", "acrostic", "num", "seed")
MIN_POEMS = 10  # the fewest pairs the discriminators' folds can use
STAGES = ("real poems", "sampling", "figures", "ngram", "neural")  # what Judge.run reports, in order
FORM_NAMES = {(5, 4): "五绝", (7, 4): "七绝", (5, 8): "五律", (7, 8): "七律"}


def poem_shape(text: str) -> tuple[str, int | None]:
    """("5"|"7", 4|8) for a regular poem, ("free", None) otherwise."""
    lines = [line for line in split_lines(text) if line]
    lengths = {len(line) for line in lines}
    if len(lines) in (4, 8) and len(lengths) == 1 and lengths <= {5, 7}:
        return str(lengths.pop()), len(lines)
    return "free", None


def js_divergence(a: list[str], b: list[str]) -> float:
    """Jensen-Shannon divergence (bits, 0 to 1) of the character distributions of two sets of poems."""
    ca, cb = _chars(a), _chars(b)
    na, nb = sum(ca.values()), sum(cb.values())
    if not na or not nb:
        return 1.0
    total = 0.0
    for ch in ca.keys() | cb.keys():
        p, q = ca[ch] / na, cb[ch] / nb
        m = (p + q) / 2
        total += (p * math.log2(p / m) if p else 0.0) + (q * math.log2(q / m) if q else 0.0)
    return total / 2


def _chars(texts: list[str]) -> Counter:
    return Counter(ch for t in texts for line in split_lines(t) for ch in line)


def set_metrics(texts: list[str], train_lines: set[str], reference: list[str], logprob: float) -> dict:
    """The figures of one set of poems (module docstring)."""
    from core.gelv import quality

    n = max(len(texts), 1)
    chars = _chars(texts)
    total = sum(chars.values())
    tones = quality(texts)
    return {
        "valid_form": round(sum(map(is_valid_form, texts)) / n, 4),
        "rhyme_rate": tones["gelv_rhyme_rate"],
        "gelv_passed": tones["gelv_passed"],
        "tone_conformity": tones["gelv_tone_conformity"],
        "distinct_1": round(len(chars) / total, 4) if total else 0.0,
        "distinct_2": round(distinct_2(texts), 4),
        "copy_rate": round(copy_rate(texts, train_lines), 4),
        "mean_length": round(total / n, 2),
        "char_js_divergence": round(js_divergence(texts, reference), 4),
        "repeated_line": round(sum(map(has_repeated_line, texts)) / n, 4),
        "mean_logprob": round(logprob, 4),
    }


@torch.inference_mode()
def teacher_forced_logprob(model, vocab, texts: list[str], device="cpu", batch: int = 128) -> float:
    """Mean log-probability per character after the first (punctuation included, `<eos>` not), the
    characters given: what a sampled poem's `mean_logprob` is, for real poems."""
    from core.corpus.vocab import BOS, PAD

    total, count = 0.0, 0
    encoded = sorted((vocab.encode(t) for t in texts), key=len)
    for k in range(0, len(encoded), batch):
        rows = encoded[k : k + batch]
        width = max(map(len, rows))
        inputs = torch.full((len(rows), width), PAD, dtype=torch.long)
        for r, ids in enumerate(rows):
            inputs[r, 0] = BOS
            inputs[r, 1 : len(ids)] = torch.tensor(ids[:-1])
        logits, _ = model(inputs.to(device))
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for r, ids in enumerate(rows):
            positions = torch.arange(1, len(ids))  # predicting characters 2..n
            total += float(logp[r, positions, torch.tensor(ids[1:])].sum())
            count += len(ids) - 1
    return total / max(count, 1)


@dataclass
class Judge:
    """A checkpoint's sampler, its corpus, and the N real poems the generated ones are set against."""

    sampler: object
    checkpoint: str
    corpus_name: str
    split: str
    real: list[str]
    other_real: list[str]
    train_lines: set[str]
    seed: int = 0
    real_metrics: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        path,
        poems: int = 1000,
        seed: int = 0,
        device: str = "cpu",
        precision: str = "auto",
        at_most: bool = False,
    ) -> Judge:
        """A checkpoint's judge: its model, vocabulary and recorded corpus."""
        from core.corpus import load_recorded_corpus
        from core.runs.checkpoint import load_checkpoint

        t0 = time.perf_counter()
        ckpt = load_checkpoint(path, map_location=device)
        corpus = load_recorded_corpus(ckpt.meta["corpus"])
        judge = cls.for_model(
            ckpt.build_model(device), ckpt.vocab, corpus, poems, seed, device, precision, str(path), at_most
        )
        judge.seconds["load"] = round(time.perf_counter() - t0, 2)
        return judge

    @classmethod
    def for_model(
        cls,
        model,
        vocab,
        corpus,
        poems: int = 1000,
        seed: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
        checkpoint: str = "(in memory)",
        at_most: bool = False,
    ) -> Judge:
        """A judge for a model in memory (one still training, or core.experiments' reference Transformer):
        anything called as `model(inputs, state=state) -> (logits, state)` with `vocab` and its corpus.
        fp32 by default: the sampler then leaves the caller's model as it is. at_most: fewer poems where the
        split has fewer (the workbench judges small corpora too), but never under MIN_POEMS."""
        from core.generation.sampler import Sampler

        script = corpus.options.get("script", "simplified")
        sampler = Sampler(model, vocab, device=device, script=script, precision=precision)
        split = "test" if corpus.splits.get("test") else "dev"
        pool = corpus.splits.get(split) or []
        known = [p for p in pool if p and sampler.content[vocab.stoi.get(p[0], 0)]]
        if at_most and len(known) >= MIN_POEMS:
            poems = min(poems, len(known))
        if len(known) < poems:
            raise PoemError(
                f"the {split} split of {corpus.name} has {len(known)} poems the model can start: "
                f"--poems {poems} is too many"
            )
        rng = random.Random(seed)
        real = rng.sample(known, poems)
        other_split = "dev" if split == "test" else "train"
        others = corpus.splits.get(other_split) or []
        other_real = rng.sample(others, min(poems, len(others)))
        train_lines = {line for p in corpus.splits["train"] for line in split_lines(p) if len(line) >= 5}
        return cls(sampler, checkpoint, corpus.name, split, real, other_real, train_lines, seed)

    def measure_real(self) -> dict:
        """The real poems' figures (once per judge)."""
        if not self.real_metrics:
            t0 = time.perf_counter()
            logprob = teacher_forced_logprob(
                self.sampler.model, self.sampler.vocab, self.real, self.sampler.device
            )
            self.real_metrics = set_metrics(self.real, self.train_lines, self.other_real, logprob)
            self.seconds["real"] = round(time.perf_counter() - t0, 2)
        return self.real_metrics

    def sample(self, base: SampleSettings) -> list:
        """One poem per real poem: its first character, its form; the rest from `base`."""
        common = {k: v for k, v in base.to_dict().items() if k not in PER_POEM}
        groups: dict[tuple, list[int]] = {}
        for i, text in enumerate(self.real):
            groups.setdefault(poem_shape(text), []).append(i)
        generator = torch.Generator().manual_seed(self.seed)
        out: list = [None] * len(self.real)
        checked: dict[tuple, SampleSettings] = {}
        for (form, lines), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0)):
            each = []
            for i in members:
                key = (self.real[i][0], form, lines)
                if key not in checked:
                    values = {**common, "start": self.real[i][0], "form": form, "lines": lines, "num": 1}
                    if form == "free":  # irregular lines: no prosody, no rhyme group
                        values.update(prosody="none", gelv=False, rhyme=None)
                    checked[key], _ = self.sampler.check(SampleSettings(**values))
                each.append(checked[key])
            for i, poem in zip(members, self.sampler.generate_each(each, generator), strict=True):
                out[i] = poem
        return out

    def run(self, base: SampleSettings, discriminate: bool = True, on_stage=None) -> dict:
        """Judge `base`; on_stage(name), if given, is called as each of STAGES begins (the workbench's
        progress bar; it may raise to stop the judge)."""
        from core.generation.discriminators import discriminate as run_discriminators

        stage = on_stage or (lambda name: None)
        base.check()
        stage("real poems")
        real = self.measure_real()
        stage("sampling")
        t0 = time.perf_counter()
        poems = self.sample(base)
        seconds = {**self.seconds, "sample": round(time.perf_counter() - t0, 2)}
        texts = [p.text for p in poems]
        logprobs = [x for p in poems for x in p.logprobs]
        t1 = time.perf_counter()
        stage("figures")
        generated = set_metrics(texts, self.train_lines, self.real, sum(logprobs) / max(len(logprobs), 1))
        seconds["metrics"] = round(time.perf_counter() - t1, 2)
        result = {
            "checkpoint": self.checkpoint,
            "corpus": self.corpus_name,
            "split": self.split,
            "poems": len(texts),
            "seed": self.seed,
            "settings": settings_of(base, self.sampler.precision),
            "generated": generated,
            "real": real,
            "forms": dict(Counter(form_name(t) for t in self.real)),
        }
        if discriminate:
            result["discriminators"] = run_discriminators(texts, self.real, seed=self.seed, on_stage=stage)
            for name, d in result["discriminators"].items():
                seconds[name] = d.pop("seconds")
        result["examples"] = [
            {"real": r, "generated": g} for r, g in zip(self.real[:4], texts[:4], strict=True)
        ]
        result["seconds"] = seconds
        self.texts = texts  # the poems of the last run (core.judge --write-poems)
        return result


def settings_of(base: SampleSettings, precision: str) -> dict:
    """The sampling settings a judge used (those not taken from the real poems), as JSON."""
    out = {k: v for k, v in base.to_dict().items() if k not in PER_POEM}
    out["prosody"] = base.mode
    out["gelv"] = base.mode == "gelv"
    out["precision"] = precision
    return out


def form_name(text: str) -> str:
    form, lines = poem_shape(text)
    return FORM_NAMES.get((int(form), lines), "free") if form != "free" else "free"
