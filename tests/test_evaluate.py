"""Perplexity is DESIGN.md §4's definition, computed the slow obvious way and compared."""

from __future__ import annotations

import math

import torch
from conftest import assert_user_error
from engine_fixtures import train_tiny

from core.corpus.vocab import BOS, EOS, UNK
from core.runs.checkpoint import load_checkpoint
from core.training.perplexity import evaluate


def by_hand(model, poems: list[list[int]]) -> tuple[float, int]:
    """Feed <bos> c1 … cn one token at a time; add -log p of c1 … cn <eos>."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in poems:
            state, prev = None, BOS
            for target in [*ids, EOS]:
                logits, state = model(torch.tensor([[prev]]), state=state)
                total -= float(torch.log_softmax(logits[0, -1].double(), dim=-1)[target])
                count += 1
                prev = target
    return total, count


def test_evaluate_equals_the_definition_by_hand(tiny_checkpoint, tang300):
    ckpt = load_checkpoint(tiny_checkpoint)
    model, vocab = ckpt.build_model(), ckpt.vocab
    poems = [vocab.encode(p) for p in tang300.splits["dev"][:5]]  # lengths differ: padding is exercised
    poems.append(vocab.encode("𠀋山月"))  # an unknown character is an <unk> target that counts
    assert UNK in poems[-1]
    total, count = by_hand(model, poems)
    result = evaluate(model, poems, batch_size=4)
    assert result.tokens == count == sum(len(p) + 1 for p in poems)
    assert result.unk_tokens == sum(t == UNK for p in poems for t in p)
    assert math.isclose(result.loss, total / count, rel_tol=1e-5)
    assert math.isclose(result.perplexity, math.exp(total / count), rel_tol=1e-5)


def test_batch_size_does_not_change_perplexity(tiny_checkpoint, tang300):
    ckpt = load_checkpoint(tiny_checkpoint)
    model, vocab = ckpt.build_model(), ckpt.vocab
    poems = [vocab.encode(p) for p in tang300.splits["dev"]]
    one, many = evaluate(model, poems, batch_size=1), evaluate(model, poems, batch_size=64)
    assert math.isclose(one.perplexity, many.perplexity, rel_tol=1e-5)


def test_cli_reports_the_contract_keys(tiny_checkpoint, cli_process):
    """The subprocess smoke test of `python -m core.evaluate`."""
    doc = cli_process("evaluate", tiny_checkpoint, "--split", "dev", "--json").json()
    assert {"perplexity", "loss", "tokens", "unk_tokens", "split", "corpus"} <= set(doc)
    assert doc["split"] == "dev" and doc["corpus"] == "tang300" and doc["tokens"] > 4000
    assert math.isclose(doc["perplexity"], math.exp(doc["loss"]), rel_tol=1e-9)


def test_cli_scores_another_corpus_with_unk(tiny_checkpoint, cli):
    """A tang300 model on quantangshi's test split: characters it never saw are <unk> targets."""
    doc = cli("evaluate", tiny_checkpoint, "--corpus", "quantangshi", "--split", "test", "--json").json()
    assert doc["corpus"] == "quantangshi" and doc["unk_tokens"] > 0 and not doc["same_corpus"]


def test_cli_split_that_does_not_exist(tiny_checkpoint, cli):
    assert_user_error(cli("evaluate", tiny_checkpoint, "--split", "test"), "no test split")


def test_model_trained_on_all_forms_is_scored_on_the_regular_splits(tmp_path, cli, quantangshi):
    """--train-forms all widens train only: the checkpoint's own dev and test are the regular corpus's,
    and evaluate recognises its corpus (same fingerprint). (Characters seen under 200 times are <unk>: a
    vocabulary of 1,791, not 8,558, makes the two passes over 1,933 poems 5x cheaper.)"""
    wide = dict(corpus="quantangshi", train_forms="all", min_freq=200)
    train_tiny(tmp_path / "wide", **wide, max_steps=2, eval_every=0)
    doc = cli("evaluate", tmp_path / "wide", "--split", "test", "--json").json()
    assert doc["same_corpus"] and doc["poems"] == len(quantangshi.splits["test"])
    assert doc["vocab_size"] > len(quantangshi.build_vocab(min_freq=200))


def test_cli_quality_samples_the_seven_starts(tiny_checkpoint, cli):
    out = cli("evaluate", tiny_checkpoint, "--split", "dev", "--quality", "--samples", "1", "--json")
    metrics = out.json()["quality"]["metrics"]
    assert metrics["poems"] == 7 and 0 <= metrics["copy_rate"] <= 1 and metrics["valid_form"] == 1.0


def test_recorded_corpus_is_the_checkpoints_own_or_the_named_one(tiny_checkpoint):
    from core.corpus import load_recorded_corpus

    recorded = load_checkpoint(tiny_checkpoint).meta["corpus"]
    assert load_recorded_corpus(recorded).fingerprint == recorded["fingerprint"]
    other = load_recorded_corpus(recorded, "quantangshi")
    assert other.name == "quantangshi" and other.options["forms"] == "regular"
