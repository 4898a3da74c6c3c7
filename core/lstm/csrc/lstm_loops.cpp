// The time loops of core/lstm/fused.py's LSTM layer in C++: per step one matrix product (oneDNN's, through
// the dispatcher, exactly as the Python loop calls it) and one pass over the rows for all the elementwise
// work, instead of a dozen small torch kernels and their Python dispatch. Same equations, same packed layout,
// same buffers as FusedLayer (core/lstm/fused.py), which falls back to its Python loops when this does not build.
//
// Registered as torch.ops.poemtui_lstm.{forward,backward}; built on first use by core/lstm/native.py.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// ---- elementwise math ------------------------------------------------------------------------------
// exp for float written so that the compiler vectorises the loops that call it (std::exp is a library
// call per element): Cody-Waite range reduction and Cephes' degree-6 polynomial, ~1 ulp. Doubles (tests,
// gradcheck) keep std::exp.

inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // NaN passes through both comparisons unchanged
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float exp_of(float x) { return exp_fast(x); }
inline double exp_of(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}

template <typename T>
inline T tanh_of(T x) {  // 2σ(2x) - 1, as core/lstm/loops.py's tanh
  return T(2) * sigmoid(T(2) * x) - T(1);
}

// One step of the forward for n rows, in two vectorised passes per row. First the gates from their
// pre-activations: act itself (W_ih x_t + b), or with bias given pre (W_ih x_t in bf16) + bias; plus mm
// (W_hh h_{t-1}, if any): i, f, o = σ, C̄ = tanh; then C_t = f ⊙ C_{t-1} + i ⊙ C̄, h_t = o ⊙ tanh(C_t). c may
// be c_prev itself (updated in place): every element is read before it is written, at its own index, which
// is what `ivdep` promises the compiler.
template <typename T, typename P, typename M>
void activate(int64_t H, const P* pre, const T* bias, const M* mm, T* act) {
  if (bias) {
#pragma GCC ivdep
    for (int64_t j = 0; j < 4 * H; ++j) act[j] = T(pre[j]) + bias[j];
  }
  if (mm) {
#pragma GCC ivdep
    for (int64_t j = 0; j < 4 * H; ++j) act[j] += T(mm[j]);
  }
#pragma GCC ivdep
  for (int64_t j = 0; j < 2 * H; ++j) act[j] = sigmoid(act[j]);
#pragma GCC ivdep
  for (int64_t j = 2 * H; j < 3 * H; ++j) act[j] = tanh_of(act[j]);
#pragma GCC ivdep
  for (int64_t j = 3 * H; j < 4 * H; ++j) act[j] = sigmoid(act[j]);
}

template <typename T>
void cell_state(int64_t H, const T* act, const T* c_prev, T* c, T* tanh_c, T* h) {
  const T *i = act, *f = act + H, *g = act + 2 * H, *o = act + 3 * H;
#pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    const T c_t = f[j] * c_prev[j] + i[j] * g[j];
    const T tc = tanh_of(c_t);
    c[j] = c_t;
    tanh_c[j] = tc;
    h[j] = o[j] * tc;
  }
}

// Rows are independent: torch's own threads (OpenMP, at::get_num_threads()) share them, each taking at
// least ~32k gate values (8 rows at H = 1024), as torch's elementwise kernels do: small steps (generation,
// tests) stay on one thread, where waking the others would cost more than the work.
constexpr int64_t GATE_VALUES_PER_TASK = 32768;

inline int64_t rows_per_task(int64_t H) { return std::max<int64_t>(1, GATE_VALUES_PER_TASK / (4 * H)); }

// x copied to y, rounded where y is bfloat16 (mode 2), while the row is still in cache.
template <typename T, typename Y>
void copy_row(int64_t n, const T* x, Y* y) {
#pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) y[j] = static_cast<Y>(static_cast<float>(x[j]));
}

template <typename T>
void copy_row(int64_t n, const T* x, T* y) {
  std::memcpy(y, x, n * sizeof(T));
}

// h_low (mode 2, else null): h_t rounded to bf16 as well, the operand of the next step's product. z_h (else
// null): where h_t of the first n_next rows goes in the weight gradients' operand [x_{t+1}, h_t] (rows
// z_stride apart; rounded in mode 2), so that backward finds it there.
template <typename T, typename P, typename M, typename Z>
void cell_forward(int64_t n, int64_t H, const P* pre, const T* bias, const M* mm, const T* c_prev, T* act, T* c,
                  T* tanh_c, T* h, at::BFloat16* h_low, Z* z_h, int64_t z_stride, int64_t n_next) {
  at::parallel_for(0, n, rows_per_task(H), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* act_r = act + r * 4 * H;
      activate(H, pre + r * 4 * H, bias, mm ? mm + r * 4 * H : nullptr, act_r);
      cell_state(H, act_r, c_prev + r * H, c + r * H, tanh_c + r * H, h + r * H);
      if (h_low) copy_row(H, h + r * H, h_low + r * H);
      if (z_h && r < n_next) copy_row(H, h + r * H, z_h + r * z_stride);
    }
  });
}

// One step of BPTT for one row (docs/lstm-derivatives.md): δh_t = δh^rec_t + d_hs; ε_t = dc + δh_t ⊙ o ⊙
// (1 - tanh²C_t); δa_t = [ε C̄ i(1-i), ε C_{t-1} f(1-f), ε i (1-C̄²), δh tanh(C_t) o(1-o)]; dc <- ε_t ⊙ f_t.
template <typename T, typename R>
void backward_row(int64_t H, const R* dh_rec, const T* d_hs, T* dc, const T* gt, const T* tc, const T* cp, T* da) {
#pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    const T i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
    const T dh_t = T(dh_rec[j]) + d_hs[j];
    const T t = tc[j];
    const T eps = dc[j] + dh_t * o * (T(1) - t * t);
    da[j] = eps * g * i * (T(1) - i);
    da[H + j] = eps * cp[j] * f * (T(1) - f);
    da[2 * H + j] = eps * i * (T(1) - g * g);
    da[3 * H + j] = dh_t * t * o * (T(1) - o);
    dc[j] = eps * f;
  }
}

// One step of BPTT for n rows. δh^rec_t of the first m rows is rec (step t+1's product, in its own dtype),
// of the others dh (the final states' gradients: rows whose last step is t). d_a_low (mode 2, else null):
// δa_t rounded to bf16 as well, the operand of the step's product.
template <typename T, typename R>
void cell_backward(int64_t n, int64_t H, const R* rec, int64_t m, const T* dh, const T* d_hs, T* dc,
                   const T* gates, const T* tanh_c, const T* c_prev, T* d_a, at::BFloat16* d_a_low) {
  at::parallel_for(0, n, rows_per_task(H), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (r < m) {
        backward_row(H, rec + r * H, d_hs + r * H, dc + r * H, gates + r * 4 * H, tanh_c + r * H, c_prev + r * H,
                     d_a + r * 4 * H);
      } else {
        backward_row(H, dh + r * H, d_hs + r * H, dc + r * H, gates + r * 4 * H, tanh_c + r * H, c_prev + r * H,
                     d_a + r * 4 * H);
      }
      if (d_a_low) copy_row(4 * H, d_a + r * 4 * H, d_a_low + r * 4 * H);
    }
  });
}

// sum += the n rows of x [n, C], column blocks shared among the threads (each sums its own columns).
template <typename T>
void add_rows(int64_t n, int64_t C, const T* x, T* sum) {
  at::parallel_for(0, C, GATE_VALUES_PER_TASK / std::max<int64_t>(n, 1), [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < n; ++r) {
      const T* row = x + r * C;
#pragma GCC ivdep
      for (int64_t j = begin; j < end; ++j) sum[j] += row[j];
    }
  });
}

// ---- matrix products ---------------------------------------------------------------------------------
// mode 0: x @ w^T with torch's own kernels (w plain [out, in]);
// mode 1: oneDNN, w prepacked by mkldnn::_reorder_linear_weight (the forward adds x_proj in the elementwise
//         pass: oneDNN's fused "add" post-op made the product itself slower, docs/REPORT.md §8);
// mode 2: bfloat16 operands (w bf16, prepacked for oneDNN or plain [out, in]; x rounded by the elementwise
//         pass that wrote it), result in bf16, added in the elementwise pass.

at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                         c10::string_view, c10::List<std::optional<at::Scalar>>,
                                         std::optional<c10::string_view>)>();
  return op.call(x, w, std::nullopt, "none", c10::List<std::optional<at::Scalar>>({std::nullopt}), "");
}

at::Tensor product(const at::Tensor& x, const at::Tensor& w, int64_t mode) {
  if (mode == 1) return onednn_linear(x, w);
  if (mode == 2) return w.is_mkldnn() ? onednn_linear(x, w) : at::linear(x, w);  // x: already bf16
  return at::mm(x, w.t());
}

// ---- the loops -------------------------------------------------------------------------------------

// gates: [N, 4H], on entry W_ih x_t + b for every packed step, on exit i, f, C̄, o (when keep). Returns hs,
// and (keep) every C_t and tanh(C_t) [N, H], or (not keep) the last C_t of each row [B, H]. h0_zero: h0 is 0,
// so step 0 has no recurrent product. Mode 2 gives x_low, W_ih x_t in bf16 as its product left it, and
// bias: gates is only written (pre-activations x_low + bias + W_hh h_{t-1}, then the gates), and the
// products' output is never converted or biased in a pass of its own. z_h (else none): the h_{t-1} columns of
// the weight gradients' operand [x_t, h_{t-1}] [N, I + H] (gates' dtype, bf16 in mode 2), rows after the
// first step's written here as h_t is computed (the first step's h0 rows and the x_t columns by the caller).
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(at::Tensor gates, const at::Tensor& w_hh,
                                                       const at::Tensor& h0, const at::Tensor& c0,
                                                       at::IntArrayRef batch_sizes, bool keep, int64_t mode,
                                                       bool h0_zero, const std::optional<at::Tensor>& x_low,
                                                       const std::optional<at::Tensor>& bias,
                                                       const std::optional<at::Tensor>& z_h) {
  TORCH_CHECK(gates.is_contiguous() && h0.is_contiguous() && c0.is_contiguous(), "contiguous inputs");
  TORCH_CHECK((mode == 2) == x_low.has_value(), "x_low in mode 2 (bf16 products), and only there");
  TORCH_CHECK(!x_low || (x_low->sizes() == gates.sizes() && x_low->is_contiguous() &&
                         x_low->scalar_type() == at::kBFloat16 && bias && bias->is_contiguous() &&
                         bias->numel() == gates.size(1) && bias->scalar_type() == gates.scalar_type()),
              "x_low: bf16 like gates, with gates' bias");
  TORCH_CHECK(!z_h || (z_h->dim() == 2 && z_h->size(0) == gates.size(0) && z_h->size(1) == h0.size(1) &&
                       z_h->stride(1) == 1 &&
                       z_h->scalar_type() == (mode == 2 ? at::kBFloat16 : gates.scalar_type())),
              "z_h: [N, H] rows of the weight gradients' operand, in the products' dtype");
  const int64_t N = gates.size(0), H = gates.size(1) / 4, B = h0.size(0);
  at::Tensor hs = at::empty({N, H}, gates.options());
  at::Tensor cs = keep ? at::empty({N, H}, gates.options()) : c0.clone();
  at::Tensor tanh_cs = at::empty({keep ? N : B, H}, gates.options());
  at::Tensor h_prev = h0, c_prev = c0;
  at::Tensor h_low = mode == 2 ? h0.to(at::kBFloat16) : at::Tensor();  // h_{t-1} in bf16, rows [0, n)
  int64_t s = 0;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "poemtui_lstm_forward", [&] {
    const scalar_t* b = x_low ? bias->data_ptr<scalar_t>() : nullptr;  // (modes 0, 1: in gates already)
    const int64_t zs = z_h ? z_h->stride(0) : 0;
    for (size_t t = 0; t < batch_sizes.size(); ++t) {
      const int64_t n = batch_sizes[t], n_next = t + 1 < batch_sizes.size() ? batch_sizes[t + 1] : 0;
      at::Tensor mm;  // W_hh h_{t-1}, none at step 0 when h0 is 0
      if (s > 0 || !h0_zero) mm = product((mode == 2 ? h_low : h_prev).narrow(0, 0, n), w_hh, mode).contiguous();
      at::Tensor c = keep ? cs.narrow(0, s, n) : cs.narrow(0, 0, n);
      at::Tensor tc = keep ? tanh_cs.narrow(0, s, n) : tanh_cs.narrow(0, 0, n);
      at::Tensor h = hs.narrow(0, s, n);
      const scalar_t* cp = c_prev.data_ptr<scalar_t>();  // (not keep: c is c_prev, updated in place)
      scalar_t* act = gates.data_ptr<scalar_t>() + s * 4 * H;  // the gates go over x_proj's rows
      scalar_t *c_out = c.data_ptr<scalar_t>(), *tc_out = tc.data_ptr<scalar_t>(), *h_out = h.data_ptr<scalar_t>();
      if (mode == 2) {  // the product in bf16 (none at step 0 when h0_zero), h_t rounded for the next one
        const at::BFloat16* product_ptr = mm.defined() ? mm.data_ptr<at::BFloat16>() : nullptr;
        at::BFloat16* low_out = h_low.data_ptr<at::BFloat16>();
        at::BFloat16* z_out = z_h ? z_h->data_ptr<at::BFloat16>() + (s + n) * zs : nullptr;
        const at::BFloat16* pre = x_low->data_ptr<at::BFloat16>() + s * 4 * H;
        cell_forward(n, H, pre, b, product_ptr, cp, act, c_out, tc_out, h_out, low_out, z_out, zs, n_next);
      } else {
        const scalar_t* product_ptr = mm.defined() ? mm.data_ptr<scalar_t>() : nullptr;
        scalar_t* z_out = z_h ? z_h->data_ptr<scalar_t>() + (s + n) * zs : nullptr;
        cell_forward(n, H, static_cast<const scalar_t*>(act), b, product_ptr, cp, act, c_out, tc_out, h_out,
                     static_cast<at::BFloat16*>(nullptr), z_out, zs, n_next);
      }
      h_prev = h;
      c_prev = c;
      s += n;
    }
  });
  return {hs, cs, tanh_cs};
}

// BPTT over the packed steps, last to first. dh, dc [B, H]: on entry the final states' gradients, on exit
// those of h0 (when need_dh0; else step 0's product is skipped and dh left undefined) and c0, in place.
// d_hs: dL/dout_t, packed [N, H]. w_hh_t: W_hh^T laid out for `mode`. Writes δa [N, 4H], the pre-activations'
// gradients of every step, into d_a, and (mode 2) rounded to bf16 into d_a_low, the operand of this loop's
// products and of the layer's weight and input gradients. d_b (else none): the bias gradient Σ_t δa_t is
// added to it, step by step while δa_t is in cache.
void backward(const at::Tensor& d_hs, at::Tensor dh, at::Tensor dc, const at::Tensor& gates, const at::Tensor& cs,
              const at::Tensor& tanh_cs, const at::Tensor& c0, const at::Tensor& w_hh_t,
              at::IntArrayRef batch_sizes, int64_t mode, at::Tensor d_a, const std::optional<at::Tensor>& d_a_low,
              bool need_dh0, const std::optional<at::Tensor>& d_b) {
  TORCH_CHECK(d_hs.is_contiguous() && dh.is_contiguous() && dc.is_contiguous() && gates.is_contiguous() &&
                  cs.is_contiguous() && tanh_cs.is_contiguous() && c0.is_contiguous() && d_a.is_contiguous(),
              "contiguous inputs");
  TORCH_CHECK(d_a.sizes() == gates.sizes() && d_a.scalar_type() == gates.scalar_type(), "d_a like gates");
  TORCH_CHECK(!d_b || (d_b->is_contiguous() && d_b->numel() == gates.size(1) &&
                       d_b->scalar_type() == gates.scalar_type()),
              "d_b: one value per gate row, gates' dtype");
  TORCH_CHECK(mode != 2 || (d_a_low && d_a_low->sizes() == gates.sizes() && d_a_low->is_contiguous() &&
                            d_a_low->scalar_type() == at::kBFloat16),
              "mode 2 writes d_a_low, bf16 like gates");
  const int64_t H = gates.size(1) / 4, T = static_cast<int64_t>(batch_sizes.size());
  std::vector<int64_t> offsets(T + 1, 0);
  for (int64_t t = 0; t < T; ++t) offsets[t + 1] = offsets[t] + batch_sizes[t];
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "poemtui_lstm_backward", [&] {
    at::Tensor rec;  // δh^rec_t = δa_{t+1} W_hh, for the rows of step t+1: read where it lies, not copied
    at::BFloat16* low_base = mode == 2 ? d_a_low->data_ptr<at::BFloat16>() : nullptr;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t n = batch_sizes[t], s = offsets[t];
      const scalar_t* cp = t == 0 ? c0.data_ptr<scalar_t>() : cs.data_ptr<scalar_t>() + offsets[t - 1] * H;
      at::Tensor d_a_t = d_a.narrow(0, s, n);
      at::BFloat16* low = low_base ? low_base + s * 4 * H : nullptr;
      const int64_t m = rec.defined() ? rec.size(0) : 0;
      scalar_t *dh_ptr = dh.data_ptr<scalar_t>(), *dc_ptr = dc.data_ptr<scalar_t>();
      const scalar_t *dhs_ptr = d_hs.data_ptr<scalar_t>() + s * H, *g_ptr = gates.data_ptr<scalar_t>() + s * 4 * H,
                     *tc_ptr = tanh_cs.data_ptr<scalar_t>() + s * H;
      if (m > 0 && rec.scalar_type() == at::kBFloat16) {  // mode 2
        cell_backward(n, H, rec.data_ptr<at::BFloat16>(), m, dh_ptr, dhs_ptr, dc_ptr, g_ptr, tc_ptr, cp,
                      d_a_t.data_ptr<scalar_t>(), low);
      } else {
        cell_backward(n, H, m > 0 ? rec.data_ptr<scalar_t>() : dh_ptr, m, dh_ptr, dhs_ptr, dc_ptr, g_ptr, tc_ptr,
                      cp, d_a_t.data_ptr<scalar_t>(), low);
      }
      if (d_b) add_rows(n, 4 * H, d_a_t.data_ptr<scalar_t>(), d_b->data_ptr<scalar_t>());  // db += Σ_rows δa_t
      if (t == 0 && !need_dh0) break;
      rec = product(mode == 2 ? d_a_low->narrow(0, s, n) : d_a_t, w_hh_t, mode).contiguous();
    }
    if (need_dh0 && rec.defined()) dh.narrow(0, 0, rec.size(0)).copy_(rec);  // δh^rec_0: h0's gradient
  });
}

// w (a transposed view, w.t() contiguous) copied to a contiguous matrix, in 16 x 16 tiles that stay in cache:
// ~2x faster than torch's strided copy for the weights W^T the backward multiplies by (4 MB each, per step).
at::Tensor contiguous_transpose(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.t().is_contiguous(), "the transpose of a contiguous matrix");
  const int64_t R = w.size(0), C = w.size(1);  // out [R, C] from src = w.t(), [C, R] contiguous
  at::Tensor out = at::empty({R, C}, w.options());
  constexpr int64_t TILE = 16;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, w.scalar_type(), "poemtui_transpose", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, (R + TILE - 1) / TILE, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r0 = begin * TILE; r0 < std::min(R, end * TILE); r0 += TILE) {
        const int64_t rn = std::min(TILE, R - r0);
        for (int64_t c0 = 0; c0 < C; c0 += TILE) {
          const int64_t cn = std::min(TILE, C - c0);
          for (int64_t r = 0; r < rn; ++r)
            for (int64_t c = 0; c < cn; ++c) dst[(r0 + r) * C + c0 + c] = src[(c0 + c) * R + r0 + r];
        }
      }
    });
  });
  return out;
}

// A plain [rows, cols] tensor over the memory of a oneDNN (mkldnn-layout) tensor, which it keeps alive:
// written as any tensor, read by oneDNN's kernels in place (core/lstm/matmul.py: no conversion copy).
at::Tensor onednn_dense_view(const at::Tensor& t) {
  static auto data_ptr =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::data_ptr", "").typed<int64_t(const at::Tensor&)>();
  static auto nbytes =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_nbytes", "").typed<int64_t(const at::Tensor&)>();
  TORCH_CHECK(t.is_mkldnn() && t.dim() == 2, "a 2-d oneDNN tensor");
  TORCH_CHECK(nbytes.call(t) == t.numel() * static_cast<int64_t>(t.element_size()), "a oneDNN tensor in plain layout");
  void* memory = reinterpret_cast<void*>(data_ptr.call(t));
  return at::from_blob(memory, t.sizes(), [owner = t](void*) {}, t.options().layout(at::kStrided));
}

}  // namespace

TORCH_LIBRARY(poemtui_lstm, m) {
  m.def("forward(Tensor(a!) gates, Tensor w_hh, Tensor h0, Tensor c0, int[] batch_sizes, bool keep, int mode, "
        "bool h0_zero=False, Tensor? x_low=None, Tensor? bias=None, Tensor(b!)? z_h=None) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("backward(Tensor d_hs, Tensor(a!) dh, Tensor(b!) dc, Tensor gates, Tensor cs, Tensor tanh_cs, "
        "Tensor c0, Tensor w_hh_t, int[] batch_sizes, int mode, Tensor(c!) d_a, Tensor(d!)? d_a_low, "
        "bool need_dh0=True, Tensor(e!)? d_b=None) -> ()");
  m.def("onednn_dense_view(Tensor t) -> Tensor");
  m.def("contiguous_transpose(Tensor w) -> Tensor");
  // CompositeExplicitAutograd: the same kernel whatever the layout of W_hh (plain or oneDNN's)
  m.impl("forward", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(forward));
  m.impl("backward", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(backward));
  m.impl("onednn_dense_view", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(onednn_dense_view));
  m.impl("contiguous_transpose", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(contiguous_transpose));
}
