"""The hand-derived gradients (core.reference.numpy_lm) against torch autograd; the core.gradcheck command."""

import numpy as np
import pytest
from conftest import assert_user_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.gradcheck import TOLERANCE, available_impls, gradcheck, rel_error, torch_gradients
from core.reference.numpy_lm import NumpyLM, random_batch, random_params


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("padding", [True, False])
def test_hand_gradients_match_autograd(layers, batch, padding):
    report = gradcheck(
        layers=layers,
        batch_size=batch,
        max_len=6,
        vocab=20,
        embed=5,
        hidden=6,
        seed=layers,
        padding=padding,
        fd_samples=2,
    )
    assert set(report["impls"]) == set(available_impls())
    assert report["max_rel_error"] <= TOLERANCE, report["parameters"]
    assert report["finite_difference"]["max_rel_error"] <= TOLERANCE
    assert report["passed"]
    if padding and batch > 1:
        assert min(report["shapes"]["lengths"]) < max(report["shapes"]["lengths"])


def test_tied_weights_gradient_is_the_sum_of_both_uses():
    report = gradcheck(layers=2, batch_size=4, max_len=5, vocab=15, hidden=6, tie_weights=True, fd_samples=2)
    assert "head.weight" not in report["parameters"]  # one matrix, one gradient (as named_parameters)
    assert report["passed"], report["parameters"]


def test_rel_error_is_scaled_by_the_largest_entry():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0, 1e-20]), np.array([1.0, 0.0])) == pytest.approx(1e-20)
    assert rel_error(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.5)


def test_the_reports_forget_gate_formula_fails_the_check():
    """Using C_t where (29) has C_{t-1} (the report's dh_t/df_t, doc §9) must be caught, by orders of
    magnitude."""
    rng = np.random.default_rng(3)
    params = random_params(12, 4, 5, 1, rng=rng)
    batch = random_batch(3, 5, 12, rng=rng)
    model = NumpyLM(params, 1)
    _, cache = model.forward(*batch)
    layer, hs = cache.layers[0], 5
    i, f, g = layer.gates[..., :hs], layer.gates[..., hs : 2 * hs], layer.gates[..., 2 * hs : 3 * hs]
    layer.c_prev[:] = f * layer.c_prev + i * g  # C_t instead of C_{t-1}
    wrong = model.backward(cache)
    _, reference = torch_gradients(params, batch, num_layers=1, impl="autograd", temperature=1.0)
    forget_rows = slice(hs, 2 * hs)
    assert rel_error(wrong["lstm.bias_l0"][forget_rows], reference["lstm.bias_l0"][forget_rows]) > 1e-3
    # the mistake lives in the LSTM's backward: the head's gradient, computed before it, is still right
    assert rel_error(wrong["head.bias"], reference["head.bias"]) <= TOLERANCE


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layers=st.integers(1, 3),
    batch=st.integers(1, 5),
    max_len=st.integers(1, 6),
    embed=st.integers(1, 5),
    hidden=st.integers(1, 6),
    vocab=st.integers(5, 12),
    temperature=st.floats(0.3, 3.0),
    seed=st.integers(0, 2**16),
)
def test_property_random_shapes(layers, batch, max_len, embed, hidden, vocab, temperature, seed):
    rng = np.random.default_rng(seed)
    params = random_params(vocab, embed, hidden, layers, rng=rng)
    data = random_batch(batch, max_len, vocab, rng=rng)
    model = NumpyLM(params, layers)
    loss, cache = model.forward(*data, temperature=temperature)
    grads = model.backward(cache)
    torch_loss, reference = torch_gradients(
        params, data, num_layers=layers, impl="autograd", temperature=temperature
    )
    assert abs(loss - torch_loss) <= TOLERANCE * abs(torch_loss)
    for name in model.parameter_names():
        assert rel_error(grads[name], reference[name]) <= TOLERANCE, name


def test_cli_json_report(cli_process):
    """The subprocess smoke test of `python -m core.gradcheck`."""
    report = cli_process("gradcheck", "--json", "--layers", "2", "--batch", "3", "--fd-samples", "2").json()
    assert report["passed"] is True
    assert report["max_rel_error"] <= TOLERANCE
    expected = {"embedding.weight", "head.weight", "head.bias"} | {
        f"lstm.{kind}_l{k}" for kind in ("weight_ih", "weight_hh", "bias") for k in range(2)
    }
    assert set(report["parameters"]) == expected
    assert all(err <= TOLERANCE for err in report["parameters"].values())
    assert report["finite_difference"]["checks"][1]["dropout"] > 0
    assert report["shapes"]["layers"] == 2


def test_cli_rejects_a_bad_flag_in_one_line(cli):
    assert_user_error(cli("gradcheck", "--layers", "0"), "--layers")
