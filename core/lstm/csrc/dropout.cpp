// Inverted dropout whose mask is a function of (seed, element position) alone: out = x ⊙ keep / (1 - p).
//
// Why: torch's CPU dropout draws its mask with bernoulli_, element by element, three times per training
// step; a counter-based generator is much cheaper (docs/REPORT.md §8) and needs no
// stored mask, since backward regenerates the same mask from the same seed. And because the mask of an
// element depends on its logical position (row id, column), the fused LSTM's packed layout (rows reordered,
// padding left out) drops exactly the units the batch layout would: the two implementations stay comparable
// to 1e-10 with dropout on (tests/test_lstm.py).
//
// Generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the one
// cuRAND and torch's CUDA generator use. Element e of a row with id r in a matrix of C columns takes counter
// block (r * C + e) / 4, lane (r * C + e) % 4; it is kept when that 32-bit draw is >= p * 2^32.
//
// Registered as torch.ops.poemtui_lstm.dropout; core/lstm/dropout.py is its autograd wrapper.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace {

// Philox4x32-10 of the counter (block, 0) under the key (k0, k1): four 32-bit draws.
inline void philox(uint64_t block, uint32_t k0, uint32_t k1, uint32_t out[4]) {
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0, c3 = 0;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0, p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

template <typename T>
inline T keep_or_drop(uint32_t draw, uint32_t threshold, T scale, T x) {
  return draw >= threshold ? x * scale : T(0);
}

// One row: y[j] = x[j] * scale where the draw of element first + j is >= threshold, else 0. Whole counter
// blocks in the middle, partial ones at either end.
template <typename T>
void dropout_row(int64_t C, uint64_t first, uint32_t k0, uint32_t k1, uint32_t threshold, T scale, const T* x,
                 T* y) {
  uint32_t d[4];
  int64_t j = 0;
  const auto partial_block = [&](int64_t stop) {
    philox((first + j) / 4, k0, k1, d);
    for (uint64_t lane = (first + j) % 4; j < stop; ++lane, ++j) y[j] = keep_or_drop(d[lane], threshold, scale, x[j]);
  };
  if (first % 4 != 0) partial_block(std::min<int64_t>(C, j + 4 - static_cast<int64_t>(first % 4)));
  for (; j + 4 <= C; j += 4) {
    philox((first + j) / 4, k0, k1, d);
    y[j] = keep_or_drop(d[0], threshold, scale, x[j]);
    y[j + 1] = keep_or_drop(d[1], threshold, scale, x[j + 1]);
    y[j + 2] = keep_or_drop(d[2], threshold, scale, x[j + 2]);
    y[j + 3] = keep_or_drop(d[3], threshold, scale, x[j + 3]);
  }
  if (j < C) partial_block(C);
}

// x: [R, C] contiguous; rows: the logical row id of each of x's rows (int64 [R]), or none (row r is r).
at::Tensor dropout(const at::Tensor& x, const std::optional<at::Tensor>& rows, double p, int64_t seed) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), "a contiguous [rows, cols] CPU tensor");
  TORCH_CHECK(p >= 0 && p < 1, "dropout probability in [0, 1)");
  const int64_t R = x.size(0), C = x.size(1);
  const int64_t* ids = nullptr;
  at::Tensor ids_tensor;
  if (rows) {
    ids_tensor = rows->to(at::kLong).contiguous();
    TORCH_CHECK(ids_tensor.dim() == 1 && ids_tensor.size(0) == R, "one row id per row");
    ids = ids_tensor.data_ptr<int64_t>();
  }
  const auto k0 = static_cast<uint32_t>(static_cast<uint64_t>(seed)),
             k1 = static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32);
  const auto threshold = static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0));
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poemtui_dropout", [&] {
    const auto scale = static_cast<scalar_t>(1.0 / (1.0 - p));
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1));
    at::parallel_for(0, R, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const auto id = static_cast<uint64_t>(ids ? ids[r] : r);
        dropout_row(C, id * static_cast<uint64_t>(C), k0, k1, threshold, scale, xp + r * C, yp + r * C);
      }
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(poemtui_lstm, m) {
  m.def("dropout(Tensor x, Tensor? rows, float p, int seed) -> Tensor");
  m.impl("dropout", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(dropout));
}
