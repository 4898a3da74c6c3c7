"""Vocabulary (order, round trip, JSON) and both batch modes, on the real corpora."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.corpus import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    Vocab,
    batches_for_mode,
    mixed_batches,
    poem_batches,
    stream_batches,
)
from core.corpus.buckets import BUCKET_CHUNK, padding_fraction, plan_poem_batches


@pytest.fixture(scope="module")
def vocab(tang300):
    return tang300.build_vocab()


def test_vocab_order_specials_then_frequency_then_code_point(tang300, vocab):
    assert vocab.itos[:4] == list(SPECIALS) == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    train = "".join(tang300.splits["train"])
    assert set(vocab.itos[4:]) == set(train)  # every train character, and only those
    keys = [(-train.count(ch), ord(ch)) for ch in vocab.itos[4:]]
    assert keys == sorted(keys)
    assert vocab.itos[4:6] == ["，", "。"]


def test_vocab_min_freq_and_rebuild_is_identical(tang300, vocab):
    assert tang300.build_vocab() == vocab
    rare = tang300.build_vocab(min_freq=2)
    assert len(rare) < len(vocab)
    train = "".join(tang300.splits["train"])
    assert all(train.count(ch) >= 2 for ch in rare.itos[4:])


def test_vocab_json_round_trip(tmp_path, vocab):
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocab.load(path) == vocab
    assert Vocab.from_json(vocab.to_json()).stoi == vocab.stoi
    for bad in ({}, {"format": "poemtui-vocab/1", "itos": ["a", "b"]}, {"itos": vocab.itos}):
        with pytest.raises(ValueError):
            Vocab.from_json(bad)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_encode_decode_round_trip(vocab, data):
    text = data.draw(st.text(alphabet=st.sampled_from(vocab.itos[4:]), max_size=64))
    ids = vocab.encode(text)
    assert len(ids) == len(text) and min(ids, default=4) >= 4
    assert vocab.decode(ids) == text


def test_unknown_characters_become_unk_and_specials_decode_to_nothing(vocab):
    assert "鿯" not in vocab
    ids = vocab.encode("山鿯水")
    assert ids[1] == UNK and ids[0] != UNK
    assert vocab.decode([BOS, *ids, EOS, PAD]) == "山水"


def test_dev_oov_rate_is_counted_against_train_vocab(tang300, vocab):
    dev = "".join(tang300.splits["dev"])
    unk = sum(1 for i in vocab.encode(dev) if i == UNK)
    assert 0 < unk / len(dev) < 0.1


def test_poem_batches_hold_every_poem_once_framed_by_bos_eos(quantangshi):
    vocab = quantangshi.build_vocab()
    encoded = [vocab.encode(p) for p in quantangshi.splits["dev"]]
    batches = poem_batches(encoded, 64, seed=7, epoch=0)
    rows = []
    for b in batches:
        assert b.inputs.dtype == b.targets.dtype == torch.long and b.mask.dtype == torch.bool
        assert b.inputs.shape == b.targets.shape == b.mask.shape
        assert (b.inputs[:, 0] == BOS).all()
        assert b.tokens == int(b.mask.sum()) == int(b.lengths.sum())
        for i, n in enumerate(b.lengths.tolist()):
            poem = b.inputs[i, 1:n].tolist()
            assert b.targets[i, : n - 1].tolist() == poem and b.targets[i, n - 1] == EOS
            assert not b.mask[i, n:].any() and (b.inputs[i, n:] == PAD).all()
            rows.append(tuple(poem))
    assert sorted(rows) == sorted(map(tuple, encoded))


def test_poem_batches_are_deterministic_per_epoch(tang300, vocab):
    encoded = [vocab.encode(p) for p in tang300.splits["train"]]

    def order(seed, epoch):
        return [b.inputs.tolist() for b in poem_batches(encoded, 16, seed=seed, epoch=epoch)]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    plain = poem_batches(encoded, 16, seed=1, epoch=0, shuffle=False, bucket=False)
    assert [row for b in plain for row in b.targets[:, 0].tolist()] == [p[0] for p in encoded]


def test_bucketing_keeps_padding_small(quantangshi):
    lengths = [len(p) for p in quantangshi.splits["train"]]
    plan = plan_poem_batches(lengths, 64, seed=0, epoch=0)
    longest = [max(lengths[i] for i in batch) for batch in plan][:BUCKET_CHUNK]
    assert longest != sorted(longest)  # the batches themselves are shuffled, not served short to long
    bucketed = padding_fraction(lengths, plan)
    unbucketed = padding_fraction(lengths, plan_poem_batches(lengths, 64, seed=0, epoch=0, bucket=False))
    assert bucketed < 0.02 < unbucketed


def test_stream_batches_are_crops_shifted_by_one(tang300, vocab):
    encoded = [vocab.encode(p) for p in tang300.splits["train"]]
    batches = stream_batches(encoded, 32, 48, seed=3, epoch=0)
    total = sum(len(p) + 2 for p in encoded)
    assert sum(len(b) for b in batches) == (total - 1) // 48
    for b in batches:
        assert b.inputs.shape[1] == 48 and (b.lengths == 48).all()
        assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1])
        assert torch.equal(b.mask, b.targets != BOS)
        assert b.tokens == int(b.mask.sum())
    again = stream_batches(encoded, 32, 48, seed=3, epoch=0)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(batches, again, strict=True))
    other = stream_batches(encoded, 32, 48, seed=3, epoch=1)
    assert not torch.equal(batches[0].inputs, other[0].inputs)


def test_stream_shorter_than_seq_len_is_padded():
    [batch] = stream_batches([[5, 6, 7]], 4, 10, seed=0, epoch=0)
    assert batch.inputs[0, :6].tolist() == [BOS, 5, 6, 7, EOS, PAD]
    assert batch.lengths.tolist() == [5] and batch.tokens == 4


def test_mixed_batches_hold_half_the_poems_whole_and_crop_the_other_half(quantangshi):
    vocab = quantangshi.build_vocab()
    encoded = [vocab.encode(p) for p in quantangshi.splits["dev"]]
    batches = mixed_batches(encoded, 32, 128, seed=5, epoch=0)
    kinds = [b.inputs.shape[1] == 128 and bool((b.lengths == 128).all()) for b in batches]
    cropped = [b for b, crop in zip(batches, kinds, strict=True) if crop]
    whole = [b for b, crop in zip(batches, kinds, strict=True) if not crop]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # shuffled together
    rows = {tuple(b.inputs[i, 1:n].tolist()) for b in whole for i, n in enumerate(b.lengths.tolist())}
    assert abs(len(rows) - len(encoded) / 2) <= 1 and rows <= set(map(tuple, encoded))
    stream_tokens = sum(b.lengths.sum().item() for b in cropped)
    held_out = sum(len(p) + 2 for p in encoded if tuple(p) not in rows)
    assert abs(stream_tokens - held_out) < 128 * 2  # about one pass over the other half, in crops
    for b in cropped:
        assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1]) and torch.equal(b.mask, b.targets != BOS)
    same = mixed_batches(encoded, 32, 128, seed=5, epoch=0)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(batches, same, strict=True))
    next_epoch = mixed_batches(encoded, 32, 128, seed=5, epoch=1)
    rows_next = {
        tuple(b.inputs[i, 1:n].tolist()) for b in next_epoch for i, n in enumerate(b.lengths.tolist())
    }
    assert rows_next != rows  # another half is whole in the next epoch


def test_batches_for_mode_dispatches_and_refuses_an_unknown_mode(tang300, vocab):
    encoded = [vocab.encode(p) for p in tang300.splits["dev"]]
    made = batches_for_mode(encoded, "poem", 8, 64, seed=1, epoch=0)
    assert [b.inputs.tolist() for b in made] == [
        b.inputs.tolist() for b in poem_batches(encoded, 8, seed=1, epoch=0)
    ]
    assert batches_for_mode(encoded, "stream", 8, 40, seed=1, epoch=0)[0].inputs.shape == (8, 40)
    assert batches_for_mode(encoded, "stream", 8, 40, seed=1, epoch=0, crops=3)[0].inputs.shape == (3, 40)
    mixed = batches_for_mode(encoded, "mixed", 8, 40, seed=1, epoch=0, crops=3)
    assert (3, 40) in {tuple(b.inputs.shape) for b in mixed}
    with pytest.raises(ValueError, match="unknown sequence mode 'rows'"):
        batches_for_mode(encoded, "rows", 8, 64, seed=1, epoch=0)
