"""How good are the poems? Form, repetition, diversity, copying and likelihood of sampled poems.

Measured over the seven assignment starts (日红山夜湖海月) × N samples with the default sampling settings:
- valid_form: share of poems in a regular form (4 or 8 lines, all of 5 or all of 7 characters,
  "，" after odd lines and "。" after even ones);
- repeated_line: share with a line that occurs twice; char_over_3: share with a character used > 3 times;
- distinct_2: distinct character bigrams / all bigrams (within lines), over all poems;
- copy_rate: share of generated lines (≥ 5 characters) found verbatim in the training split;
- mean_logprob: the model's mean log-probability per generated character.
"""

from __future__ import annotations

from collections import Counter

import torch

from core.corpus.lines import LINE_ENDS, split_lines
from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings

ASSIGNMENT_STARTS = "日红山夜湖海月"


def is_valid_form(text: str) -> bool:
    lines = split_lines(text)
    if len(lines) not in (4, 8) or len({len(line) for line in lines}) != 1 or len(lines[0]) not in (5, 7):
        return False
    marks = [ch for ch in text if ch in LINE_ENDS]
    return marks == ["，", "。"] * (len(lines) // 2) and text.endswith("。")


def has_repeated_line(text: str) -> bool:
    lines = [line for line in split_lines(text) if line]
    return len(lines) != len(set(lines))


def has_char_over(text: str, limit: int = 3) -> bool:
    counts = Counter(ch for ch in text if ch not in LINE_ENDS)
    return any(n > limit for n in counts.values())


def distinct_2(texts: list[str]) -> float:
    bigrams = [line[i : i + 2] for t in texts for line in split_lines(t) for i in range(len(line) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def copy_rate(texts: list[str], train_lines: set[str]) -> float:
    lines = [line for t in texts for line in split_lines(t) if len(line) >= 5]
    return sum(line in train_lines for line in lines) / len(lines) if lines else 0.0


def poem_metrics(texts: list[str], logprobs: list[float], train_lines: set[str]) -> dict:
    n = max(len(texts), 1)
    return {
        "poems": len(texts),
        "valid_form": sum(map(is_valid_form, texts)) / n,
        "repeated_line": sum(map(has_repeated_line, texts)) / n,
        "char_over_3": sum(has_char_over(t) for t in texts) / n,
        "distinct_2": distinct_2(texts),
        "copy_rate": copy_rate(texts, train_lines),
        "mean_logprob": sum(logprobs) / len(logprobs) if logprobs else 0.0,
    }


def gelv_metrics(texts: list[str]) -> dict | None:
    """Tone conformity and rhyme rates from core.gelv, when it is available."""
    try:
        from core.gelv import rates
    except ImportError:
        return None
    return rates(texts)


def quality_report(
    model,
    vocab,
    ckpt,
    samples: int = 20,
    seed: int = 0,
    device="cpu",
    settings: SampleSettings | None = None,
    precision: str = "auto",
    corpus=None,
) -> dict:
    """The poems are sampled as `core.generate` samples them by default (precision "auto"). Copied lines are
    counted against the train split of `corpus`: the checkpoint's own (loaded when not given)."""
    if corpus is None:
        from core.corpus import load_recorded_corpus

        corpus = load_recorded_corpus(ckpt.meta["corpus"])
    train_lines = {line for p in corpus.splits["train"] for line in split_lines(p) if len(line) >= 5}
    sampler = Sampler(model, vocab, device=device, precision=precision)
    base = settings or SampleSettings()
    texts, logprobs, examples = [], [], {}
    for i, start in enumerate(ASSIGNMENT_STARTS):
        s = SampleSettings(**{**base.to_dict(), "start": start, "num": samples})
        gen = torch.Generator().manual_seed(seed * 1000 + i)
        poems = sampler.generate(s, generator=gen)
        texts += [p.text for p in poems]
        logprobs += [lp for p in poems for lp in p.logprobs]
        examples[start] = poems[0].text
    metrics = poem_metrics(texts, logprobs, train_lines)
    tones = gelv_metrics(texts)
    if tones is not None:
        metrics.update(tones)
    return {
        "metrics": metrics,
        "settings": {
            **base.to_dict(),
            "samples_per_start": samples,
            "seed": seed,
            "precision": sampler.precision,
        },
        "examples": examples,
    }
