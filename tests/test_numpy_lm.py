"""The NumPy language model and its optimizers agree with the torch model and torch.optim."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.model import ModelConfig, PoetryLM
from core.reference.numpy_lm import NumpyLM, random_batch, random_params
from core.reference.numpy_optim import OPTIMIZERS, clip_grad_norm, make_optimizer

VOCAB, EMBED, HIDDEN = 30, 8, 10


def torch_model(layers, impl="autograd", tie_weights=False, init="default"):
    torch.manual_seed(0)
    embed = HIDDEN if tie_weights else EMBED
    cfg = ModelConfig(
        vocab_size=VOCAB,
        embed_size=embed,
        hidden_size=HIDDEN,
        num_layers=layers,
        dropout=0.0,
        tie_weights=tie_weights,
        lstm_impl=impl,
        init=init,
    )
    return PoetryLM(cfg).double().eval()


def as_torch(batch):
    return tuple(torch.from_numpy(np.asarray(a)) for a in batch)


@pytest.mark.parametrize("impl", ["autograd", "fused"])
@pytest.mark.parametrize("layers", [1, 3])
def test_forward_equals_torch_forward(impl, layers):
    model = torch_model(layers, impl)
    np_model = NumpyLM.from_torch_state(model.state_dict(), dtype=np.float64)
    batch = random_batch(6, 8, VOCAB, rng=np.random.default_rng(layers))
    inputs, targets, mask, lengths = as_torch(batch)
    for temperature in (1.0, 0.7):
        loss, cache = np_model.forward(*batch, temperature=temperature)
        with torch.no_grad():
            logits, _ = model(inputs, lengths=lengths)
            picked = logits[mask] / temperature
            expected_loss = F.cross_entropy(picked, targets[mask]).item()
            expected_probs = picked.softmax(-1).numpy()
        assert loss == pytest.approx(expected_loss, rel=1e-12)
        np.testing.assert_allclose(cache.probs, expected_probs, rtol=1e-10, atol=1e-14)
        assert cache.tokens == int(mask.sum())
        assert cache.loss_sum == pytest.approx(expected_loss * cache.tokens, rel=1e-12)


def test_padding_changes_nothing():
    """Extra padding columns leave the loss and every gradient exactly as they were (DESIGN.md §4)."""
    rng = np.random.default_rng(1)
    np_model = NumpyLM(random_params(VOCAB, EMBED, HIDDEN, 2, rng=rng), 2)
    inputs, targets, mask, lengths = random_batch(4, 6, VOCAB, rng=rng)
    pad = np.zeros((4, 5), dtype=inputs.dtype)
    padded = (np.hstack([inputs, pad]), np.hstack([targets, pad]), np.hstack([mask, pad > 0]), lengths)
    loss, cache = np_model.forward(inputs, targets, mask, lengths)
    grads = np_model.backward(cache)
    loss_padded, cache_padded = np_model.forward(*padded)
    grads_padded = np_model.backward(cache_padded)
    assert loss_padded == pytest.approx(loss, rel=1e-14)
    for name, grad in grads.items():
        np.testing.assert_allclose(grads_padded[name], grad, rtol=1e-12, atol=1e-16)


def test_state_dict_round_trip_through_torch():
    """A NumPy-trained model loads into PoetryLM (strict) and scores exactly as it did in NumPy."""
    batch = random_batch(5, 7, VOCAB, rng=np.random.default_rng(2))
    np_model = NumpyLM.from_torch_state(torch_model(2).state_dict(), dtype=np.float64)
    opt = make_optimizer("adam", 1e-2)
    for _ in range(3):
        _, cache = np_model.forward(*batch)
        opt.step(np_model.params, np_model.backward(cache))
    loss, _ = np_model.forward(*batch)

    fresh = torch_model(2)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in np_model.to_state_dict().items()}, strict=True)
    inputs, targets, mask, lengths = as_torch(batch)
    with torch.no_grad():
        logits, _ = fresh(inputs, lengths=lengths)
        assert F.cross_entropy(logits[mask], targets[mask]).item() == pytest.approx(loss, rel=1e-12)


def test_tied_weights_export_both_names():
    model = torch_model(1, tie_weights=True)
    np_model = NumpyLM.from_torch_state(model.state_dict(), tie_weights=True, dtype=np.float64)
    assert "head.weight" not in np_model.parameter_names()
    state = np_model.to_state_dict()
    assert state["head.weight"] is state["embedding.weight"]
    assert set(state) == set(model.state_dict())


def test_float32_stays_float32():
    np_model = NumpyLM.from_torch_state(torch_model(1).state_dict())  # float32 by default
    loss, cache = np_model.forward(*random_batch(3, 5, VOCAB, rng=np.random.default_rng(0)))
    grads = np_model.backward(cache)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert np.isfinite(loss)


def test_dropout_masks_follow_the_rng_and_vanish_in_eval():
    rng = np.random.default_rng(4)
    np_model = NumpyLM(random_params(VOCAB, EMBED, HIDDEN, 2, rng=rng), 2, dropout=0.5)
    batch = random_batch(4, 6, VOCAB, rng=rng)
    eval_loss, eval_cache = np_model.forward(*batch)
    assert all(m is None for m in eval_cache.drop_masks)
    a, cache_a = np_model.forward(*batch, train=True, rng=np.random.default_rng(9))
    b, _ = np_model.forward(*batch, train=True, rng=np.random.default_rng(9))
    c, _ = np_model.forward(*batch, train=True, rng=np.random.default_rng(10))
    assert a == b != c != eval_loss
    assert len(cache_a.drop_masks) == 3  # embedding, between the two layers, before the head
    assert set(np.unique(cache_a.drop_masks[0])) == {0.0, 2.0}  # inverted dropout: kept units scaled 1/(1-p)
    with pytest.raises(ValueError, match="rng"):
        np_model.forward(*batch, train=True)


def test_zeros_init_learns_nothing_but_the_output_bias():
    """docs/lstm-derivatives.md §10: with every parameter 0, h_t ≡ 0, so only b_y gets a gradient."""
    np_model = NumpyLM.from_torch_state(torch_model(2, init="zeros").state_dict(), dtype=np.float64)
    batch = random_batch(4, 6, VOCAB, rng=np.random.default_rng(5))
    opt = make_optimizer("sgd", 1.0)
    for _ in range(3):
        _, cache = np_model.forward(*batch)
        grads = np_model.backward(cache)
        assert np.abs(grads["head.bias"]).max() > 0
        assert all(not g.any() for name, g in grads.items() if name != "head.bias"), "only b_y may move"
        opt.step(np_model.params, grads)


def test_constant_init_keeps_hidden_units_identical():
    """docs/lstm-derivatives.md §10: units that start equal (rows and columns) get equal gradients, so they
    stay copies of one another."""
    params = {name: np.full_like(p, 0.1) for name, p in torch_model(1).state_dict().items()}
    params = {k: v.astype(np.float64) for k, v in params.items()}
    np_model = NumpyLM(params, 1)
    batch = random_batch(4, 6, VOCAB, rng=np.random.default_rng(6))
    opt = make_optimizer("sgd", 0.5)
    for _ in range(3):
        _, cache = np_model.forward(*batch)
        grads = np_model.backward(cache)
        for gate in np.split(grads["lstm.weight_hh_l0"], 4):  # the rows of one gate: one per hidden unit
            np.testing.assert_allclose(gate, np.broadcast_to(gate[0], gate.shape), rtol=1e-12, atol=1e-15)
        opt.step(np_model.params, grads)
    for gate in np.split(np_model.params["lstm.weight_ih_l0"], 4):
        np.testing.assert_allclose(gate, np.broadcast_to(gate[0], gate.shape), rtol=1e-12)


TORCH_OPTIMIZERS = {  # name -> the torch.optim optimizer with the settings core.reference.numpy_optim mirrors
    "sgd": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, weight_decay=wd),
    "momentum": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=wd),
    "nesterov": lambda ps, lr, wd: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
    "adagrad": lambda ps, lr, wd: torch.optim.Adagrad(ps, lr=lr, weight_decay=wd),
    "adadelta": lambda ps, lr, wd: torch.optim.Adadelta(ps, lr=lr, weight_decay=wd),
    "rmsprop": lambda ps, lr, wd: torch.optim.RMSprop(ps, lr=lr, weight_decay=wd),
    "adam": lambda ps, lr, wd: torch.optim.Adam(ps, lr=lr, weight_decay=wd),
    "adamw": lambda ps, lr, wd: torch.optim.AdamW(ps, lr=lr, weight_decay=wd),
}


def test_every_optimizer_has_a_torch_twin():
    assert set(TORCH_OPTIMIZERS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_match_torch_optim_across_batches(name):
    """Same gradients in, same weights out, step after step (the state survives between batches)."""
    rng = np.random.default_rng(7)
    start = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    grad_seq = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(4)]
    lr = 0.05
    ours = make_optimizer(name, lr, momentum=0.9, weight_decay=0.01)
    np_params = {k: v.copy() for k, v in start.items()}
    t_params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    theirs = TORCH_OPTIMIZERS[name](list(t_params.values()), lr, 0.01)
    for grads in grad_seq:
        ours.step(np_params, grads)
        for k, p in t_params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        theirs.step()
    for k in start:
        np.testing.assert_allclose(np_params[k], t_params[k].detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_dict_resumes_exactly(name):
    rng = np.random.default_rng(8)
    grad_seq = [{"w": rng.standard_normal(6)} for _ in range(4)]
    straight = {"w": np.ones(6)}
    opt = make_optimizer(name, 0.1)
    for grads in grad_seq:
        opt.step(straight, grads)

    resumed = {"w": np.ones(6)}
    first = make_optimizer(name, 0.1)
    for grads in grad_seq[:2]:
        first.step(resumed, grads)
    state = first.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state["tensors"].values())
    second = make_optimizer(name, 999.0)  # hyperparameters come back from the state too
    second.load_state_dict(state)
    for grads in grad_seq[2:]:
        second.step(resumed, grads)
    np.testing.assert_array_equal(resumed["w"], straight["w"])


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(9)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(7)}
    tensors = [torch.tensor(g, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.from_numpy(g.copy())
    expected = torch.nn.utils.clip_grad_norm_(tensors, 1.0).item()
    assert clip_grad_norm(grads, 1.0) == pytest.approx(expected, rel=1e-12)
    for t, g in zip(tensors, grads.values(), strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
    assert clip_grad_norm(grads, 100.0) == pytest.approx(1.0, rel=1e-5)  # under the cap: unchanged


def test_training_with_hand_gradients_fits_a_batch():
    rng = np.random.default_rng(10)
    np_model = NumpyLM.from_torch_state(torch_model(2).state_dict(), dropout=0.1)
    batch = random_batch(6, 8, VOCAB, rng=rng)
    opt = make_optimizer("adam", 3e-2)
    first, _ = np_model.forward(*batch)
    for _ in range(150):
        _, cache = np_model.forward(*batch, train=True, rng=rng)
        grads = np_model.backward(cache)
        clip_grad_norm(grads, 5.0)
        opt.step(np_model.params, grads)
    last, _ = np_model.forward(*batch)
    assert last < 0.5 * first
