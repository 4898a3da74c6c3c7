"""load_corpus: raw files -> cleaned, filtered, de-duplicated poems in deterministic splits.

Named corpora are `tang300` (唐诗三百首) and `quantangshi` (全唐诗); anything else is a path to a user's
file. Options: script "simplified" (OpenCC t2s, the default) or "traditional" (the source's characters);
forms "regular" (4 or 8 lines of all-5 or all-7 characters; quantangshi's default) or "all" (the default
for tang300 and user files). Named corpora are cached under data/cache/ (see cache.py); user files are
small and processed every time.

train_forms "all" with forms "regular" widens the train split only: training sees the other forms too,
while dev and test stay the regular corpus's, so its perplexities keep their meaning. Added are the
all-forms corpus's train poems that are no dev or test poem of the regular corpus and share no line with
one (the same guard as tang300's dev; by rank, 40 regular dev/test poems fall in all-forms' train).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.corpus import cache
from core.corpus.clean import DROP_REASONS, clean_source_text, drop_reason, is_regular, to_simplified
from core.corpus.lines import split_long
from core.corpus.sources import (
    corpus_files,
    parse_package_files,
    parse_user_file,
    read_bytes,
    read_package_files,
)
from core.corpus.splits import SPLIT_NAMES, SPLIT_SEED, fractions_for, remove_overlap, split_poems
from core.corpus.vocab import Vocab
from core.errors import CorpusError

NAMED = ("tang300", "quantangshi")
SCRIPTS = ("simplified", "traditional")
FORMS = ("regular", "all")
DEFAULT_FORMS = {"quantangshi": "regular"}  # everything else: "all"
# A user's poem longer than this is cut into pieces of at most this many characters, between lines (after
# 。？！ where possible): one poem is one training sequence, and a 1 MB line made one batch need 22 GB.
# 唐诗三百首's longest poem has 960 characters; 26 poems of 全唐诗 (all forms) are longer, up to 2,980.
MAX_USER_POEM_CHARS = 1024


@dataclass
class Corpus:
    name: str  # "tang300" | "quantangshi" | a user file's absolute path
    splits: dict[str, list[str]]  # "train" / "dev" / "test" -> poem texts, in source order
    fingerprint: str
    split_seed: int
    options: dict  # {"script": ..., "forms": ...}
    dropped: dict[str, int]  # reason (clean.DROP_REASONS) -> poems dropped
    split_long: dict[str, int] = field(default_factory=dict)  # {"poems", "pieces"}: user poems cut to size
    source_poems: int = 0  # poems in the source files, before anything was dropped
    load_seconds: float = 0.0
    cache: str = "off"  # "hit", "miss" (built and saved) or "off"
    files: list[str] = field(default_factory=list)

    @property
    def poems(self) -> list[str]:
        return [text for name in SPLIT_NAMES for text in self.splits[name]]

    def splits_digest(self) -> str:
        """sha256 of the split texts: equal digests, equal splits (checks compare it across processes)."""
        return hashlib.sha256(json.dumps(self.splits, ensure_ascii=False).encode()).hexdigest()

    def build_vocab(self, min_freq: int = 1) -> Vocab:
        """The vocabulary of the train split only (characters seen at least min_freq times)."""
        return Vocab.build(self.splits["train"], min_freq=min_freq)

    def __repr__(self) -> str:
        sizes = "/".join(str(len(self.splits[s])) for s in SPLIT_NAMES)
        return f"Corpus({self.name!r}, train/dev/test={sizes}, {self.options})"


def load_corpus(
    name: str | Path,
    *,
    script: str = "simplified",
    forms: str | None = None,
    train_forms: str | None = None,
    use_cache: bool = True,
) -> Corpus:
    """tang300, quantangshi or a user file, processed as the module docstring says."""
    start = time.perf_counter()
    name = str(name)
    if script not in SCRIPTS:
        raise CorpusError(f"unknown script {script!r}: use {' or '.join(SCRIPTS)}")
    forms = forms or DEFAULT_FORMS.get(name, "all")
    train_forms = train_forms or forms
    for value in (forms, train_forms):
        if value not in FORMS:
            raise CorpusError(f"unknown forms {value!r}: use {' or '.join(FORMS)}")
    if (forms, train_forms) == ("all", "regular"):
        raise CorpusError("train forms can only widen the corpus's forms (regular -> all), not narrow them")
    options = {"script": script, "forms": forms}
    corpus = _load_named(name, options, use_cache) if name in NAMED else _load_user_file(name, options)
    if train_forms != forms:
        corpus = _widen_train(corpus, use_cache)
    corpus.load_seconds = round(time.perf_counter() - start, 3)
    return corpus


def load_recorded_corpus(recorded: dict, name: str | None = None) -> Corpus:
    """The corpus a checkpoint recorded (its `corpus` metadata: name and options) or, given another name,
    that corpus with its default forms in the checkpoint's script."""
    options = recorded.get("options") if isinstance(recorded.get("options"), dict) else {}
    own = name is None or name == recorded["name"]
    return load_corpus(
        recorded["name"] if own else name,
        script=options.get("script", "simplified"),
        forms=options.get("forms") if own else None,
        train_forms=options.get("train_forms") if own else None,
    )


def _widen_train(corpus: Corpus, use_cache: bool) -> Corpus:
    """The regular corpus with the other forms' train poems added to train (module docstring)."""
    wide = load_corpus(corpus.name, script=corpus.options["script"], forms="all", use_cache=use_cache)
    own = set(corpus.splits["train"])
    held_out = corpus.splits["dev"] + corpus.splits["test"]
    extra, _ = remove_overlap([p for p in wide.splits["train"] if p not in own], held_out)
    digest = hashlib.sha256(f"{corpus.fingerprint}\n{wide.fingerprint}\ntrain_forms=all".encode())
    return replace(
        corpus,
        splits={**corpus.splits, "train": corpus.splits["train"] + extra},
        fingerprint=digest.hexdigest(),
        options={**corpus.options, "train_forms": "all"},
    )


def _load_named(name: str, options: dict, use_cache: bool) -> Corpus:
    files = corpus_files(name)
    blobs = read_package_files(files)
    guard = read_package_files(corpus_files("tang300")) if name == "quantangshi" else []
    fp = cache.fingerprint(blobs + guard, options)
    where = cache.cache_path(name, options)
    if use_cache and (doc := cache.load_cached(where, fp)) is not None:
        kept = {k: doc[k] for k in ("splits", "dropped", "source_poems", "split_seed")}
        return Corpus(
            name=name, fingerprint=fp, options=options, cache="hit", files=list(map(str, files)), **kept
        )
    corpus = _build(name, parse_package_files(blobs), options, fp)
    corpus.files = list(map(str, files))
    if name == "quantangshi":
        guarded = load_corpus("tang300", script=options["script"], use_cache=use_cache).splits["dev"]
        corpus.splits["train"], n = remove_overlap(corpus.splits["train"], guarded)
        corpus.dropped = ordered({**corpus.dropped, "tang300_dev_overlap": n})
    if use_cache:
        keep = ("splits", "dropped", "source_poems", "split_seed")
        cache.save_cached(
            where,
            {"name": name, "fingerprint": fp, "options": options} | {k: getattr(corpus, k) for k in keep},
        )
        corpus.cache = "miss"
    return corpus


def _load_user_file(name: str, options: dict) -> Corpus:
    path = Path(name).expanduser()
    if not os.path.lexists(path) and path.suffix == "" and "/" not in name:
        raise CorpusError(f"unknown corpus {name!r}: use {' or '.join(NAMED)}, or a path to a poem file")
    data = read_bytes(path)  # a FIFO, a device, a folder or a symlink loop: one line, nothing read
    path = path.resolve()
    corpus = _build(
        str(path),
        parse_user_file(path, data),
        options,
        cache.fingerprint([(path, data)], options),
        max_chars=MAX_USER_POEM_CHARS,
    )
    corpus.files = [str(path)]
    return corpus


def _build(name: str, raw: list[list[str]], options: dict, fp: str, max_chars: int | None = None) -> Corpus:
    """Clean, cut overlong poems (max_chars), drop, convert, filter forms, de-duplicate, split."""
    dropped: Counter[str] = Counter()
    kept: list[str] = []
    keys: list[str] = []  # the raw source text: splits stay put when the cleaning rules change
    cut = Counter()
    for paragraphs in raw:
        text = clean_source_text(paragraphs)
        pieces = split_long(text, max_chars) if max_chars else [text]
        if len(pieces) > 1:
            cut["poems"] += 1
            cut["pieces"] += len(pieces)
        for i, piece in enumerate(pieces):
            reason = drop_reason(piece)
            if reason:
                dropped[reason] += 1
            else:
                kept.append(piece)
                keys.append("".join(paragraphs) + (f"\n{i}" if i else ""))
    final = to_simplified(kept) if options["script"] == "simplified" else kept
    texts, text_keys, seen = [], [], set()
    for key, text in zip(keys, final, strict=True):
        if options["forms"] == "regular" and not is_regular(text):
            dropped["irregular_form"] += 1
        elif text in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(text)
            texts.append(text)
            text_keys.append(key)
    if not texts:
        summary = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "nothing to read"
        raise CorpusError(f"{name}: no poems left after cleaning ({summary})")
    splits = split_poems(texts, text_keys, fractions_for(name, len(texts)), SPLIT_SEED)
    return Corpus(
        name=name,
        splits=splits,
        fingerprint=fp,
        split_seed=SPLIT_SEED,
        options=options,
        dropped=ordered(dropped),
        source_poems=len(raw),
        split_long=dict(cut),
    )


def ordered(dropped: dict[str, int]) -> dict[str, int]:
    """Non-zero counts, in the order of clean.DROP_REASONS."""
    return {reason: dropped[reason] for reason in DROP_REASONS if dropped.get(reason)}
