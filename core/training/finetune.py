"""Fine-tuning: a new run that starts from a checkpoint's weights (not its optimizer) on another corpus.

    cfg = fine_tune_config(read_meta(ckpt), flags, preset)        # the settings of the new run
    trainer = Trainer.init_from(ckpt, cfg, run_dir)               # weights copied, vocabulary extended

Settings. The model is the checkpoint's (its sizes cannot change; a size, tying, prosody or init given on the
command line that contradicts it is refused in one line); the regularisers (dropout, locked and embedding
dropout, DropConnect) and the LSTM implementation may be given anew. The training settings are, in order:
the checkpoint's own, then FINE_TUNE (a schedule for a small corpus: core.training.settings), then a preset's
training settings, then the flags. The corpus is the new one: its splits and fingerprint are the run's, so
`--resume` of a fine-tune run works like any run's.

Vocabulary. The new run's vocabulary is the checkpoint's, followed by the characters of the new corpus's
train split that the checkpoint lacks, in that split's frequency order (ties by code point, as
core.corpus.vocab orders any vocabulary): every old id keeps its row, so the old model is unchanged on
old characters.

New rows (`extend_state`), after Hewitt (2021), "Initializing new word embeddings for pretrained language
models":
- embedding rows, and output rows of an untied head: the mean of the old characters' rows (specials
  excluded) plus Gaussian noise of 0.1 × the old rows' per-dimension standard deviation. The mean is what
  the LSTM has seen an average character look like, so a new character's input is in the distribution the
  weights were trained on (a fresh random row of the init scheme's scale would be an outlier for a trained
  layer), and as an output row it gives the new character about the average logit instead of a random
  one; the noise makes the new rows different from each other, so their gradients differ.
- output bias: the mean bias of the rarest tenth of the old characters (the vocabulary is in train
  frequency order, so they are its last tenth). Together with the mean row, a new character starts about
  as likely as a rare known one: unlikely (it does not take probability from the characters the model
  knows) but with a gradient large enough to learn from.
- a tied head: embedding and output matrix are one matrix, so its new rows are set once (as above).
- the prosody table (a buffer: kind, tones, rhyme groups of each id): the old rows are the checkpoint's,
  the new rows are built by core.gelv.prosody for the new characters.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from core.corpus.vocab import SPECIALS, Vocab
from core.errors import PoemError
from core.model_config import ModelConfig
from core.training.settings import FINE_TUNE, MODEL_FIELDS, TrainConfig

# Model settings that define the weights' shapes or their origin: a fine-tune keeps the checkpoint's.
FIXED_MODEL = ("embed_size", "hidden_size", "num_layers", "tie_weights", "prosody", "prosody_size", "init")
# Settings that say which corpus (and which of its poems) a run trains on.
CORPUS_FIELDS = ("corpus", "forms", "train_forms")
NOISE = 0.1  # new rows: mean of the old rows + NOISE × their per-dimension std × N(0, 1)
RARE_TAIL = 0.1  # new output biases: the mean bias of this rarest fraction of the old characters


def fine_tune_config(meta: dict, flags: dict, preset: dict | None = None) -> TrainConfig:
    """The settings of a run started from a checkpoint with metadata `meta` (core.runs.checkpoint.read_meta),
    `flags` (the TrainConfig settings given on the command line) and an optional preset's settings.

    Raises PoemError when a flag contradicts the checkpoint's model."""
    model = meta["model"]
    for name in FIXED_MODEL:
        if name in flags and name in model and flags[name] != model[name]:
            flag = TrainConfig.specs()[name].flag
            raise PoemError(
                f"{flag} {_shown(flags[name])} contradicts the checkpoint's {_shown(model[name])}: a "
                "fine-tune keeps the model of the checkpoint it starts from"
            )
    own = {k: v for k, v in (meta.get("train") or {}).items() if k in TrainConfig.specs()}
    preset = {k: v for k, v in (preset or {}).items() if k not in MODEL_FIELDS}
    values = {**own, **FINE_TUNE, **preset, **flags}
    if values.get("corpus") != own.get("corpus"):
        for name in CORPUS_FIELDS[1:]:  # another corpus: its own forms unless they were asked for
            if name not in flags and name not in preset:
                values[name] = None
    values.update({k: model[k] for k in MODEL_FIELDS if k in model and k not in flags})
    return TrainConfig.from_dict(values)


def check_model(cfg: TrainConfig, model: ModelConfig) -> None:
    """The run's model settings must be the checkpoint's where they shape the weights."""
    for name in FIXED_MODEL:
        if getattr(cfg, name) != getattr(model, name):
            raise PoemError(
                f"{TrainConfig.specs()[name].flag} {_shown(getattr(cfg, name))} contradicts the checkpoint's "
                f"{_shown(getattr(model, name))}: a fine-tune keeps the model it starts from"
            )


def union_vocab(old: Vocab, new: Vocab) -> tuple[Vocab, list[str]]:
    """The checkpoint's vocabulary followed by the characters of `new` (a corpus's, in its frequency order)
    that it lacks; returns (the union, the added characters)."""
    added = [ch for ch in new.itos[len(SPECIALS) :] if ch not in old.stoi]
    return Vocab([*old.itos, *added]), added


def _new_rows(rows: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n rows: the mean of `rows` plus NOISE × their per-dimension std × N(0, 1) (module docstring)."""
    mean = rows.mean(0)
    std = rows.std(0) if rows.shape[0] > 1 else torch.zeros_like(mean)
    noise = torch.randn((n, rows.shape[1]), generator=generator, dtype=torch.float64).to(rows.dtype)
    return mean + NOISE * std * noise


def extend_state(
    state: dict[str, torch.Tensor], cfg: ModelConfig, old: Vocab, new: Vocab, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The checkpoint's model state (`Checkpoint.model_state`, a tied head stored once as the embedding)
    for the vocabulary `new`, which extends `old`: old rows kept, new rows as the module docstring says."""
    if new.itos[: len(old)] != old.itos:
        raise ValueError("the new vocabulary must start with the old one")
    n, v_old = len(new) - len(old), len(old)
    out = dict(state)
    if n == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    content = slice(len(SPECIALS), v_old)
    rows = ["embedding.weight"] + ([] if cfg.tie_weights else ["head.weight"])
    for name in rows:
        weight = state[name]
        out[name] = torch.cat([weight, _new_rows(weight[content].double(), n, gen).to(weight.dtype)])
    bias = state["head.bias"]
    tail = max(1, math.ceil((v_old - len(SPECIALS)) * RARE_TAIL))
    rare = bias[max(len(SPECIALS), v_old - tail) : v_old]
    out["head.bias"] = torch.cat([bias, rare.mean().expand(n).to(bias.dtype)])
    if "prosody.table" in state:
        from core.gelv.prosody import prosody_table

        table = state["prosody.table"]
        added = torch.from_numpy(prosody_table(new.itos[v_old:])).to(table.dtype)
        out["prosody.table"] = torch.cat([table, added])
    return out


def origin(ckpt, added: list[str], vocab_size: int) -> dict:
    """What a fine-tune run records of where it started (the `init_from` section of its checkpoints)."""
    progress = ckpt.meta.get("progress", {})
    return {
        "path": str(Path(ckpt.path).resolve()),
        "corpus": ckpt.meta.get("corpus", {}).get("name"),
        "step": progress.get("step"),
        "dev_ppl": progress.get("dev_ppl"),
        "vocab_size": len(ckpt.vocab),
        "new_characters": len(added),
        "vocab_size_now": vocab_size,
    }


def start_run(trainer_class, checkpoint: Path, cfg: TrainConfig, run_dir: Path, **kwargs):
    """Trainer.init_from's work: the checkpoint's weights, extended to the union vocabulary, in a new run."""
    from core.runs.checkpoint import load_checkpoint
    from core.training.preflight import (
        check_vocab,
        claim_folder,
        fits_in_memory,
        make_backend,
        refuse_other_run,
    )
    from core.training.state import RunData, load_run_corpus, start_processes

    ckpt = load_checkpoint(checkpoint)
    check_model(cfg, ckpt.model_config)
    cfg.check()
    refuse_other_run(run_dir, None)  # a fine-tune is a new run: never in a folder that holds one
    device = start_processes(cfg)
    corpus = load_run_corpus(cfg)
    vocab, added = union_vocab(ckpt.vocab, corpus.build_vocab(min_freq=cfg.min_freq))
    backend = make_backend(cfg, vocab, device)
    backend.load_weights(extend_state(ckpt.model_state, ckpt.model_config, ckpt.vocab, vocab, seed=cfg.seed))
    data = RunData.of(corpus, vocab, cfg.corpus)
    check_vocab(cfg, data, cfg.corpus)
    first = fits_in_memory(cfg, data, device)
    folder = claim_folder(run_dir, None)
    trainer = trainer_class(cfg, folder, data, backend, first_batches=first, **kwargs)
    trainer.origin = origin(ckpt, added, len(vocab))
    trainer._evaluate_first = True
    return trainer


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
