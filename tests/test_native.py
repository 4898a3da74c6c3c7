"""The compiled time loops (core/lstm/csrc/lstm_loops.cpp) against the Python loops of core/lstm/loops.py."""

import shutil

import pytest
import torch
from test_lstm import assert_close

import core.lstm
import core.lstm.matmul
from core.lstm import LSTM, native

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")


@pytest.fixture(scope="module")
def loops():
    built = native.lstm_loops()
    assert built is not None, "a machine with c++ and ninja builds the compiled loops"
    return built


def run(lstm, x, lengths, state, weights, python_loops: bool, monkeypatch):
    """Outputs, final states and every gradient of one forward + backward. state None: the zero state,
    which the loops know has no recurrent product at step 0 and needs no gradient."""
    with monkeypatch.context() as m:
        if python_loops:
            m.setattr(native, "lstm_loops", lambda: None)
        lstm.zero_grad()
        x = x.clone().requires_grad_()
        state = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        out, (h, c) = lstm(x, state=state, lengths=lengths)
        w_out, w_h, w_c = weights
        ((out * w_out).sum() + (h * w_h).sum() + (c * w_c).sum()).backward()
        grads = [p.grad.clone() for p in lstm.parameters()] + [x.grad]
        grads += [] if state is None else [state[0].grad, state[1].grad]
        return [out.detach(), h.detach(), c.detach(), *grads]


def batch(dtype, B=5, T=9, I=6, H=8, L=2):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, I, dtype=dtype, generator=gen)
    lengths = torch.tensor([9, 3, 0, 9, 5][:B])  # unsorted, one empty row, padding
    state = (
        torch.randn(L, B, H, dtype=dtype, generator=gen),
        torch.randn(L, B, H, dtype=dtype, generator=gen),
    )
    weights = (
        torch.randn(B, T, H, dtype=dtype, generator=gen),
        torch.randn(L, B, H, dtype=dtype, generator=gen),
        torch.randn(L, B, H, dtype=dtype, generator=gen),
    )
    return x, lengths, state, weights


@needs_compiler
@pytest.mark.parametrize("zero_state", [False, True], ids=["state-given", "zero-state"])
@pytest.mark.parametrize(
    "dtype, onednn, tol",
    [(torch.float64, False, 1e-12), (torch.float32, False, 2e-6), (torch.float32, True, 2e-6)],
)
def test_compiled_loops_compute_what_the_python_loops_compute(
    loops, monkeypatch, dtype, onednn, tol, zero_state
):
    torch.manual_seed(0)
    lstm = LSTM(6, 8, num_layers=2).to(dtype)
    x, lengths, state, weights = batch(dtype)
    state = None if zero_state else state
    with monkeypatch.context() as m:
        m.setattr(core.lstm.matmul, "onednn_works", lambda: onednn)
        m.setattr(core.lstm.fused, "ONEDNN_MIN_STEPS", 1)
        compiled = run(lstm, x, lengths, state, weights, python_loops=False, monkeypatch=monkeypatch)
        python = run(lstm, x, lengths, state, weights, python_loops=True, monkeypatch=monkeypatch)
    for k, (a, b) in enumerate(zip(compiled, python, strict=True)):
        assert_close(a, b, tol, f"result {k}")


@needs_compiler
@pytest.mark.parametrize("zero_state", [False, True], ids=["state-given", "zero-state"])
@pytest.mark.parametrize("onednn", [False, True], ids=["plain-bf16-weights", "onednn-prepacked"])
def test_compiled_loops_under_bf16_autocast_match_the_python_loops(loops, monkeypatch, onednn, zero_state):
    """bf16 operands in the matmuls, float32 everywhere else: the same roundings on both paths (the rounded
    h_t and δa_t written by the elementwise passes, the weights prepacked for oneDNN or not)."""
    if onednn and not core.lstm.matmul.onednn_bf16_works():
        pytest.skip("no oneDNN bf16 on this CPU")
    torch.manual_seed(0)
    lstm = LSTM(6, 8, num_layers=2)
    x, lengths, state, weights = batch(torch.float32)
    state = None if zero_state else state
    monkeypatch.setattr(core.lstm.matmul, "onednn_bf16_works", lambda: onednn)
    monkeypatch.setattr(core.lstm.fused, "ONEDNN_MIN_STEPS", 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compiled = run(lstm, x, lengths, state, weights, python_loops=False, monkeypatch=monkeypatch)
        python = run(lstm, x, lengths, state, weights, python_loops=True, monkeypatch=monkeypatch)
    for k, (a, b) in enumerate(zip(compiled, python, strict=True)):
        assert a.dtype == torch.float32
        assert_close(a, b, 1e-5, f"result {k}")


@needs_compiler
def test_compiled_loops_without_grad_give_the_same_states(loops, monkeypatch):
    """Under no_grad the loops keep one cell state per row, updated in place, and no gates."""
    torch.manual_seed(0)
    lstm = LSTM(6, 8, num_layers=2)
    x, lengths, state, _ = batch(torch.float32)
    with torch.no_grad():
        out, (h, c) = lstm(x, state=state, lengths=lengths)
        with monkeypatch.context() as m:
            m.setattr(native, "lstm_loops", lambda: None)
            out_p, (h_p, c_p) = lstm(x, state=state, lengths=lengths)
    for a, b in ((out, out_p), (h, h_p), (c, c_p)):
        assert torch.allclose(a, b, atol=2e-6)


@needs_compiler
def test_the_fused_lstm_uses_the_compiled_loops_on_cpu(loops):
    x = torch.randn(2, 3, 4)
    assert core.lstm.loops.time_loops(x) is loops


@needs_compiler
def test_a_bf16_model_runs_the_python_loops(loops):
    """Generation may run a bfloat16 copy of the model: the compiled loops are float32 and float64 only."""
    torch.manual_seed(0)
    lstm = LSTM(6, 8, num_layers=2).to(torch.bfloat16)
    x = torch.randn(2, 5, 6, dtype=torch.bfloat16)
    assert core.lstm.loops.time_loops(x) is core.lstm.loops.PythonLoops
    with torch.no_grad():
        out, _ = lstm(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@needs_compiler
def test_loading_again_in_the_same_process_reuses_the_library(loops):
    """A second build call (after cache_clear) must find the same build: a new one would register the
    poemtui_lstm namespace twice, which torch refuses (once seen: load() grew our flag lists in place)."""
    native.lstm_loops.cache_clear()
    try:
        assert native.lstm_loops() is not None
    finally:
        native.lstm_loops.cache_clear()
    assert native.lstm_loops() is not None


def test_without_the_compiled_loops_the_python_loops_take_over(monkeypatch):
    monkeypatch.setattr(native, "lstm_loops", lambda: None)
    assert core.lstm.loops.time_loops(torch.randn(2, 3, 4)) is core.lstm.loops.PythonLoops


def test_poemtui_native_0_turns_the_compiled_loops_off(monkeypatch):
    monkeypatch.setenv("POEMTUI_NATIVE", "0")
    native.lstm_loops.cache_clear()
    try:
        assert native.lstm_loops() is None
    finally:
        monkeypatch.delenv("POEMTUI_NATIVE")
        native.lstm_loops.cache_clear()


def test_a_failed_build_says_so_in_one_line_and_falls_back(monkeypatch, capsys):
    def broken():
        raise RuntimeError(
            "Error building extension 'poemtui_lstm'\nninja: build stopped: subcommand failed."
        )

    monkeypatch.setattr(native, "_build", broken)
    native.lstm_loops.cache_clear()
    try:
        assert native.lstm_loops() is None
    finally:
        native.lstm_loops.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Python loops" in err[0] and "build stopped" in err[0]


@needs_compiler
@pytest.mark.skipif(not core.lstm.matmul.onednn_works(), reason="no oneDNN")
def test_weight_gradients_read_from_onednn_memory_are_the_plain_ones(loops):
    """grads_operand hands out matrices in oneDNN's memory (no conversion copy before the weight-gradient
    kernel); filled like any tensor, they give what torch.mm gives, and so does the copying path."""
    assert native.onednn_dense_view() is not None
    gen = torch.Generator().manual_seed(0)
    dy, x = torch.randn(37, 20, generator=gen), torch.randn(37, 11, generator=gen)
    mm = core.lstm.matmul.FullPrecision(onednn=True)
    dy_buffer, x_buffer = mm.grads_operand(37, 20, like=dy), mm.grads_operand(37, 11, like=x)
    dy_buffer.copy_(dy)
    x_buffer[:, :5] = x[:, :5]  # filled in parts, as the fused backward fills [x_t, h_{t-1}]
    x_buffer[:, 5:] = x[:, 5:]
    for buffer in (dy_buffer, x_buffer):  # the kernel reads the very memory that was written
        assert torch.ops.mkldnn.data_ptr(mm._as_onednn(buffer)) == buffer.data_ptr()
    for d_w, d_b in (mm.linear_grads(dy_buffer, x_buffer), mm.linear_grads(dy, x)):
        assert_close(d_w, dy.t() @ x, 2e-6, "dW")
        assert_close(d_b, dy.sum(0), 2e-6, "db")


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2048, 512), (37, 5), (1, 9), (16, 16), (17, 33)])
def test_the_tiled_transpose_copies_what_torch_copies(loops, dtype, shape):
    """core.lstm.matmul.contiguous(W^T): the compiled tile copy, whole tiles and ragged edges."""
    w = torch.randn(*shape).to(dtype)
    copied = core.lstm.matmul.contiguous(w.t())
    assert copied.is_contiguous() and torch.equal(copied, w.t().contiguous())


@needs_compiler
def test_the_tiled_transpose_shares_its_tiles_between_threads(loops):
    """The suite runs on one torch thread (tests/conftest.py); the tiles of a large copy are shared among
    torch's threads (at::parallel_for, grain 1), so that path is tried here on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        w = torch.randn(2048, 512)
        copied = core.lstm.matmul.contiguous(w.t())
    finally:
        torch.set_num_threads(threads)
    assert copied.is_contiguous() and torch.equal(copied, w.t().contiguous())


def test_python_m_core_lstm_builds_and_says_which_loops(cli_process):
    """The subprocess smoke test of `python -m core.lstm` (the set-up's build step)."""
    out = cli_process("lstm")
    assert out.status == 0, out.err
    expected = "built and loaded" if shutil.which("c++") else "unavailable, Python loops"
    assert out.out.strip() == f"compiled LSTM loops: {expected}"
