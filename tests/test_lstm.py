"""Our LSTM against torch.nn.LSTM (same weights), its padding semantics, the fused BPTT against autograd."""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import core.lstm
import core.lstm.matmul
from core.lstm import LSTM

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
IMPLS = ["autograd", "fused"]


def make_pair(input_size, hidden_size, num_layers, dtype, impl, seed=0):
    """Our LSTM and a torch.nn.LSTM holding the same weights (our bias = bias_ih + bias_hh)."""
    torch.manual_seed(seed)
    ref = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True).to(dtype)
    ours = LSTM(input_size, hidden_size, num_layers, impl=impl).to(dtype)
    with torch.no_grad():
        for k in range(num_layers):
            getattr(ours, f"weight_ih_l{k}").copy_(getattr(ref, f"weight_ih_l{k}"))
            getattr(ours, f"weight_hh_l{k}").copy_(getattr(ref, f"weight_hh_l{k}"))
            getattr(ours, f"bias_l{k}").copy_(getattr(ref, f"bias_ih_l{k}") + getattr(ref, f"bias_hh_l{k}"))
    return ours, ref


def assert_close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), f"{what}: max abs error {err:.3g}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_torch_lstm(impl, dtype, num_layers, with_state):
    B, T, I, H = 3, 7, 5, 6
    ours, ref = make_pair(I, H, num_layers, dtype, impl)
    torch.manual_seed(1)
    x = torch.randn(B, T, I, dtype=dtype)
    state = (torch.randn(num_layers, B, H, dtype=dtype), torch.randn(num_layers, B, H, dtype=dtype))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ours = tuple(s.clone().requires_grad_() for s in state) if with_state else None
    s_ref = tuple(s.clone().requires_grad_() for s in state) if with_state else None

    out, (h, c) = ours(x_ours, s_ours)
    out_r, (h_r, c_r) = ref(x_ref, s_ref)
    tol = TOL[dtype]
    assert_close(out, out_r, tol, "output")
    assert_close(h, h_r, tol, "h_n")
    assert_close(c, c_r, tol, "c_n")

    # A loss that reaches every output and both final states, with unequal weights.
    torch.manual_seed(2)
    w_out, w_h, w_c = torch.randn_like(out), torch.randn_like(h), torch.randn_like(c)
    ((out * w_out).sum() + (h * w_h).sum() + (c * w_c).sum()).backward()
    ((out_r * w_out).sum() + (h_r * w_h).sum() + (c_r * w_c).sum()).backward()
    assert_close(x_ours.grad, x_ref.grad, tol, "d x")
    if with_state:
        assert_close(s_ours[0].grad, s_ref[0].grad, tol, "d h0")
        assert_close(s_ours[1].grad, s_ref[1].grad, tol, "d c0")
    for k in range(num_layers):
        for name in ("weight_ih", "weight_hh"):
            assert_close(getattr(ours, f"{name}_l{k}").grad, getattr(ref, f"{name}_l{k}").grad, tol, name)
        assert_close(ours.__getattr__(f"bias_l{k}").grad, getattr(ref, f"bias_ih_l{k}").grad, tol, "bias")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_batch_equals_each_poem_alone(impl, num_layers):
    dtype, B, T, I, H = torch.float64, 4, 9, 5, 6
    ours, _ = make_pair(I, H, num_layers, dtype, impl)
    lengths = torch.tensor([9, 3, 6, 1])
    torch.manual_seed(3)
    x = torch.randn(B, T, I, dtype=dtype)
    state = (torch.randn(num_layers, B, H, dtype=dtype), torch.randn(num_layers, B, H, dtype=dtype))
    out, (h_n, c_n) = ours(x, state, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, (h_b, c_b) = ours(x[b : b + 1, :n], (state[0][:, b : b + 1], state[1][:, b : b + 1]))
        assert_close(out[b, :n], alone[0], 1e-10, "output")
        assert (out[b, n:] == 0).all(), "padded outputs must be 0"
        assert_close(h_n[:, b], h_b[:, 0], 1e-10, "h_n")
        assert_close(c_n[:, b], c_b[:, 0], 1e-10, "c_n")


@pytest.mark.parametrize("impl", IMPLS)
def test_padded_steps_get_no_gradient(impl):
    """Inputs at padded steps cannot influence anything, so their gradient is exactly zero."""
    dtype = torch.float64
    ours, _ = make_pair(4, 5, 2, dtype, impl)
    x = torch.randn(3, 6, 4, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    out, (h, c) = ours(x, lengths=lengths)
    (out.sum() + h.sum() + c.sum()).backward()
    for b, n in enumerate(lengths.tolist()):
        assert (x.grad[b, n:] == 0).all()
        assert (x.grad[b, :n] != 0).any()


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_only_in_training(impl):
    torch.manual_seed(0)
    lstm = LSTM(4, 8, num_layers=2, dropout=0.5, impl=impl).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    lstm.eval()
    first, _ = lstm(x)
    second, _ = lstm(x)
    assert torch.equal(first, second)
    lstm.train()
    torch.manual_seed(1)
    dropped, _ = lstm(x)
    assert not torch.allclose(dropped, first)
    # One layer: nothing to drop between layers, training changes nothing.
    single = LSTM(4, 8, num_layers=1, dropout=0.5, impl=impl).double()
    assert torch.equal(single.train()(x)[0], single.eval()(x)[0])


def test_parameter_names_and_shapes():
    lstm = LSTM(3, 4, num_layers=2)
    shapes = {name: tuple(p.shape) for name, p in lstm.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (16, 3),
        "weight_hh_l0": (16, 4),
        "bias_l0": (16,),
        "weight_ih_l1": (16, 4),
        "weight_hh_l1": (16, 4),
        "bias_l1": (16,),
    }


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl"):
        LSTM(3, 4, impl="cudnn")


def test_source_uses_no_builtin_recurrent_layer():
    """No torch recurrent layer, cell or kernel anywhere in core/lstm/'s code (docstrings may name them)."""
    forbidden = {"LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell", "RNNBase", "_VF", "lstm"}
    forbidden |= {"lstm_cell", "gru", "gru_cell", "rnn_tanh", "rnn_relu", "_thnn_fused_lstm_cell"}
    sources = sorted(Path(core.lstm.__file__).parent.glob("*.py"))
    assert len(sources) >= 7
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.ImportFrom):
                used.update(alias.name for alias in node.names if not (node.module or "").startswith("core."))
                assert "rnn" not in (node.module or ""), node.module
            elif isinstance(node, ast.Import):
                assert not any("rnn" in alias.name for alias in node.names)
        assert not used & forbidden, f"{path.name} uses {sorted(used & forbidden)}"


# --- the fused BPTT against autograd on the plain ops ------------------------------------------------------


def run_both(num_layers, lengths, with_state, dropout=0.0, B=5, T=8, I=4, H=6, seed=0):
    """Outputs, final states and every gradient of the two implementations holding the same weights."""
    torch.manual_seed(seed)
    x = torch.randn(B, T, I, dtype=torch.float64)
    state = (
        torch.randn(num_layers, B, H, dtype=torch.float64),
        torch.randn(num_layers, B, H, dtype=torch.float64),
    )
    weights = {"out": torch.randn(B, T, H, dtype=torch.float64), "hc": torch.randn(2, num_layers, B, H)}
    results = {}
    for impl in IMPLS:
        torch.manual_seed(seed)
        lstm = LSTM(I, H, num_layers, dropout=dropout, impl=impl).double().train()
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in state) if with_state else None
        torch.manual_seed(seed + 1)  # the same dropout masks on both sides
        out, (h, c) = lstm(xi, si, lengths=lengths)
        loss = (out * weights["out"]).sum() + (h * weights["hc"][0]).sum() + (c * weights["hc"][1]).sum()
        loss.backward()
        grads = {f"d {name}": p.grad for name, p in lstm.named_parameters()}
        grads["d x"] = xi.grad
        if with_state:
            grads["d h0"], grads["d c0"] = si[0].grad, si[1].grad
        results[impl] = {"out": out, "h_n": h, "c_n": c, **grads}
    return results


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(
    "lengths",
    [None, [8, 8, 8, 8, 8], [8, 7, 5, 5, 2], [3, 8, 1, 6, 8], [0, 4, 8, 0, 2], [5, 3, 5, 1, 2]],
    ids=["none", "full", "sorted", "unsorted", "empty-rows", "shorter-than-T"],
)
def test_fused_matches_autograd(num_layers, with_state, lengths):
    lengths = None if lengths is None else torch.tensor(lengths)
    results = run_both(num_layers, lengths, with_state)
    for name, expected in results["autograd"].items():
        assert_close(results["fused"][name], expected, 1e-10, name)


def test_fused_matches_autograd_with_dropout():
    results = run_both(3, torch.tensor([3, 8, 1, 6, 8]), with_state=True, dropout=0.4)
    for name, expected in results["autograd"].items():
        assert_close(results["fused"][name], expected, 1e-10, name)


def test_fused_gradcheck():
    """Finite differences on a tiny float64 case: every input of the fused path, padding included."""
    torch.manual_seed(0)
    lstm = LSTM(3, 4, num_layers=2, impl="fused").double()
    lengths = torch.tensor([2, 4, 3])
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    names, params = zip(*lstm.named_parameters(), strict=True)

    def fn(x, h0, c0, *weights):
        out, (h, c) = torch.func.functional_call(
            lstm, dict(zip(names, weights, strict=True)), (x, (h0, c0)), {"lengths": lengths}
        )
        return out, h, c

    assert torch.autograd.gradcheck(fn, (x, h0, c0, *params))


def test_fused_without_onednn_matches_torch_lstm(monkeypatch):
    """The plain-torch matmul path (other CPUs, other dtypes, GPUs) in float32, padding included."""
    monkeypatch.setattr(core.lstm.matmul, "onednn_works", lambda: False)
    ours, ref = make_pair(5, 6, 2, torch.float32, "fused")
    x = torch.randn(3, 7, 5)
    out, (h, c) = ours(x, lengths=torch.tensor([7, 7, 7]))
    out_r, (h_r, c_r) = ref(x)
    assert_close(out, out_r, 1e-5, "output")
    assert_close(h, h_r, 1e-5, "h_n")
    assert_close(c, c_r, 1e-5, "c_n")


def test_inference_without_autograd_gives_the_same_numbers():
    ours, _ = make_pair(4, 5, 2, torch.float32, "fused")
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 0, 4])
    state = (torch.randn(2, 3, 5), torch.randn(2, 3, 5))
    with_grad, (h, c) = ours(x, state, lengths=lengths)
    with torch.no_grad():
        without, (h2, c2) = ours(x, state, lengths=lengths)
    assert torch.equal(with_grad, without) and torch.equal(h, h2) and torch.equal(c, c2)


def test_bf16_autocast_rounds_only_the_matmuls():
    """Under a bfloat16 autocast the fused layer multiplies in bf16 but keeps its state and gradients in
    float32: outputs and gradients track float32's to bf16's ~3 digits, and every result is float32."""
    B, T, I, H = 6, 12, 16, 32
    lengths = torch.tensor([12, 9, 12, 4, 7, 1])
    runs = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        lstm = LSTM(I, H, num_layers=2, impl="fused")
        x = torch.randn(B, T, I, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, (h, c) = lstm(x, lengths=lengths)
        torch.manual_seed(1)
        ((out * torch.randn_like(out)).sum() + h.sum() + c.sum()).backward()
        grads = {name: p.grad for name, p in lstm.named_parameters()}
        runs[bf16] = {"out": out, "h_n": h, "c_n": c, "d x": x.grad, **grads}
    for name, exact in runs[False].items():
        mixed = runs[True][name]
        assert mixed.dtype == torch.float32, name
        assert not torch.equal(mixed, exact), f"{name}: bf16 autocast changed nothing"
        rel = ((mixed - exact).norm() / exact.norm()).item()
        assert rel < 2e-2, f"{name}: relative error {rel:.3g}"


def test_fp16_autocast_and_autograd_impl_stay_full_precision():
    """Only a bfloat16 autocast changes the fused layer's matmuls; the autograd path ignores autocast."""
    for impl, dtype in (("fused", torch.float16), ("autograd", torch.bfloat16)):
        torch.manual_seed(0)
        lstm = LSTM(4, 5, impl=impl)
        x = torch.randn(2, 3, 4)
        plain, _ = lstm(x)
        with torch.autocast("cpu", dtype=dtype):
            inside, _ = lstm(x)
        assert torch.equal(plain, inside), (impl, dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fused_matches_autograd_on_cuda():
    lengths = torch.tensor([3, 8, 1, 6, 8])
    with torch.device("cuda"):
        results = run_both(2, lengths.cuda(), with_state=True)
    for name, expected in results["autograd"].items():
        assert_close(results["fused"][name], expected, 1e-10, name)


@pytest.mark.parametrize("impl", IMPLS)
def test_training_after_inference_mode_on_the_same_shape(impl):
    """The fused layout of a shape is cached; made first under inference_mode (generation, evaluation), it
    must still serve a later forward that autograd records."""
    lstm = LSTM(3, 4, num_layers=2, impl=impl)
    with torch.inference_mode():
        lstm(torch.randn(2, 5, 3))
    x = torch.randn(2, 5, 3, requires_grad=True)
    out, _ = lstm(x)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
