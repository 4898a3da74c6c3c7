"""core.lstm.dropout: torch's dropout semantics, a Philox mask keyed by logical position (dropout.cpp)."""

import pytest
import torch

import core.lstm.dropout
from core.lstm import native
from core.lstm.dropout import dropout

M32 = 0xFFFFFFFF


def philox4x32_10(counter: int, key: int) -> list[int]:
    """Philox4x32-10 of the counter (counter, 0) under a 64-bit key, written out from the paper."""
    c = [counter & M32, counter >> 32 & M32, 0, 0]
    k0, k1 = key & M32, key >> 32 & M32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M32, (p0 >> 32) ^ c[3] ^ k1, p0 & M32]
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c


def expected_keep(row_ids: list[int], C: int, p: float, seed: int) -> torch.Tensor:
    """Element j of the row with id r is kept when draw (r * C + j) of the stream is >= p * 2^32."""
    key = seed & (2**64 - 1)
    keep = []
    for r in row_ids:
        row = []
        for j in range(C):
            e = r * C + j
            row.append(philox4x32_10(e // 4, key)[e % 4] >= int(p * 2**32))
        keep.append(row)
    return torch.tensor(keep)


@pytest.fixture(scope="module")
def ops():
    built = native.lstm_loops()
    if built is None:
        pytest.skip("no compiled library on this machine")
    return built


def test_philox_matches_the_published_known_answer():
    """Random123's known-answer test vector for philox4x32_10, counter 0 and key 0."""
    assert philox4x32_10(0, 0) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


@pytest.mark.parametrize("C", [13, 16, 3])  # partial counter blocks at either end of a row, or only those
def test_the_kernel_keeps_exactly_the_units_philox_says(ops, C):
    seed = -123456789  # negative: the key is its 64-bit two's complement
    x = torch.randn(7, C, dtype=torch.float64)
    y = ops.dropout(x, None, 0.3, seed)
    keep = expected_keep(list(range(7)), C, 0.3, seed)
    assert torch.equal(y != 0, keep)
    assert torch.allclose(y[keep], x[keep] / 0.7, rtol=1e-15)


def test_row_ids_make_the_mask_follow_the_rows(ops):
    """Rows given in another order (the LSTM's packed layout) with their ids: the same units dropped."""
    x = torch.randn(40, 24)
    perm = torch.randperm(40)[:25]
    full = ops.dropout(x, None, 0.5, 7)
    assert torch.equal(ops.dropout(x[perm].contiguous(), perm, 0.5, 7), full[perm])


def test_training_statistics_and_eval(ops):
    torch.manual_seed(0)
    x = torch.ones(512, 1024)
    y = dropout(x, 0.2)
    assert abs((y != 0).float().mean().item() - 0.8) < 0.002
    assert set(y.unique().tolist()) == {0.0, 1.25}
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_backward_regenerates_the_forward_mask(ops):
    x = torch.randn(6, 33, 20, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.4)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert torch.equal(x.grad, upstream * (y != 0) / 0.6)


def test_torch_seed_governs_the_masks(ops):
    x = torch.ones(64, 64)
    torch.manual_seed(5)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.5), a) and not torch.equal(a, b)


def test_without_the_kernel_torch_draws_the_same_units_for_every_layout(monkeypatch):
    """GPUs and machines without a compiler: F.dropout's mask, drawn in the logical layout."""
    monkeypatch.setattr(core.lstm.dropout, "_kernel", lambda x: None)
    x = torch.randn(10, 8)
    rows = torch.tensor([3, 9, 0, 4])
    torch.manual_seed(2)
    full = dropout(x, 0.5)
    torch.manual_seed(2)
    assert torch.equal(dropout(x[rows], 0.5, rows=rows, logical_rows=10), full[rows])


def test_the_model_drops_with_these_masks_in_training_only():
    """PoetryLM's dropout (embedding output, between layers, before the head) is this module's: the same
    seed gives the same logits in training, eval mode gives the same logits whatever the seed."""
    from core.model import ModelConfig, PoetryLM

    model = PoetryLM(ModelConfig(vocab_size=20, embed_size=8, hidden_size=8, dropout=0.3))
    ids = torch.randint(4, 20, (3, 6))
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(model.train()(ids)[0])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    torch.manual_seed(1)
    a = model.eval()(ids)[0]
    torch.manual_seed(2)
    assert torch.equal(a, model(ids)[0])
