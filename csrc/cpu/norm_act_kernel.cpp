// Fused norm + activation + dropout + channel-slice write on the CPU, forward and backward.
// Forward: one read for the statistics (float64 sums of x and x*x), one read + one write for the
// output. Backward recomputes x_hat, the activation's gate and the dropout mask from x and the
// saved (mean, rstd) instead of storing them: one reduction pass, one pass writing grad_x.
//
// Layout: every tensor the kernel touches has a unit stride either along C (channels-last: a
// "segment" is the channels of one pixel) or along W (NCHW: a segment is one image row); the
// launcher guarantees it. Inner loops run over a segment, so they vectorize in both layouts.
#include <algorithm>
#include <initializer_list>
#include <cmath>
#include <vector>

#include "dispatch.h"
#include "kernels.h"

namespace fastp2p::cpu {
namespace {

constexpr int64_t kChannelBlock = 16;  // channels per reduction task in channels-last layout

// A run of elements along the unit-stride dimension: channels [c0, c0 + len) of pixel (n, h, w0)
// when CHANNELS_INNER, else columns [w0, w0 + len) of row (n, c0, h).
template <bool CHANNELS_INNER>
struct Segment {
  int64_t n, c0, h, w0, len;

  int64_t offset(const Strides4& s) const { return n * s.n + c0 * s.c + h * s.h + w0 * s.w; }
  // Logical NCHW flat index of element j (the dropout counter).
  int64_t index(const Shape4& shape, int64_t j) const {
    int64_t first = ((n * shape.C + c0) * shape.H + h) * shape.W + w0;
    return first + j * (CHANNELS_INNER ? shape.H * shape.W : 1);
  }
};

// Calls fn(segment) for every segment of the tensor, in parallel. Segments are numbered
// (n, h, w) in channels-last, (n, c, h) in NCHW; each thread's range counts its coordinates up
// from its first segment's: three integer divisions per segment cost more than a short
// segment's arithmetic (a 512x2x2 NCHW map is 512 segments of 4 elements).
template <bool CHANNELS_INNER, typename Fn>
void for_each_segment(const Shape4& s, int num_threads, Fn&& fn) {
  const int64_t middle = CHANNELS_INNER ? s.H : s.C, inner = CHANNELS_INNER ? s.W : s.H;
  parallel_ranges(s.N * middle * inner, s.numel() > kParallelGrain, num_threads,
                  [&](int64_t begin, int64_t end) {
    int64_t n = begin / (middle * inner), m = begin / inner % middle, i = begin % inner;
    for (int64_t r = begin; r < end; ++r) {
      if constexpr (CHANNELS_INNER) {
        fn(Segment<true>{n, 0, m, i, s.C});
      } else {
        fn(Segment<false>{n, m, i, 0, s.W});
      }
      if (++i == inner) {
        i = 0;
        if (++m == middle) m = 0, ++n;
      }
    }
  });
}

// Two float64 sums per group, group = (n, c) when per_sample else c. fn(segment, acc0, acc1)
// adds a segment into the accumulators (indexed by j in channels-last, [0] in NCHW).
template <bool CHANNELS_INNER, typename Fn>
void reduce_per_group(const Shape4& s, bool per_sample, int num_threads, double* sum0,
                      double* sum1, Fn&& fn) {
  const int64_t samples = per_sample ? s.N : 1;
  const int64_t n_per_task = per_sample ? 1 : s.N;
  if constexpr (CHANNELS_INNER) {
    const int64_t blocks = (s.C + kChannelBlock - 1) / kChannelBlock;
    parallel_for(samples * blocks, s.numel() > kParallelGrain, num_threads, [&](int64_t task) {
      const int64_t sample = task / blocks, c0 = (task % blocks) * kChannelBlock;
      const int64_t len = std::min(kChannelBlock, s.C - c0);
      double acc0[kChannelBlock] = {}, acc1[kChannelBlock] = {};
      for (int64_t n = sample * n_per_task; n < (sample + 1) * n_per_task; ++n)
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t w = 0; w < s.W; ++w) fn(Segment<true>{n, c0, h, w, len}, acc0, acc1);
      for (int64_t j = 0; j < len; ++j) {
        sum0[sample * s.C + c0 + j] = acc0[j];
        sum1[sample * s.C + c0 + j] = acc1[j];
      }
    });
  } else {
    parallel_for(samples * s.C, s.numel() > kParallelGrain, num_threads, [&](int64_t task) {
      const int64_t sample = task / s.C, c = task % s.C;
      double acc0 = 0, acc1 = 0;
      for (int64_t n = sample * n_per_task; n < (sample + 1) * n_per_task; ++n)
        for (int64_t h = 0; h < s.H; ++h) fn(Segment<false>{n, c, h, 0, s.W}, &acc0, &acc1);
      sum0[task] = acc0;
      sum1[task] = acc1;
    });
  }
}

// Adds elem(j) -> (e0, e1) over a segment into the accumulators.
template <bool CHANNELS_INNER, typename Elem>
inline void accumulate(int64_t len, double* acc0, double* acc1, Elem&& elem) {
  if constexpr (CHANNELS_INNER) {
    for (int64_t j = 0; j < len; ++j) {
      double e0, e1;
      elem(j, e0, e1);
      acc0[j] += e0;
      acc1[j] += e1;
    }
  } else {
    double s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : s0, s1)
    for (int64_t j = 0; j < len; ++j) {
      double e0, e1;
      elem(j, e0, e1);
      s0 += e0;
      s1 += e1;
    }
    acc0[0] += s0;
    acc1[0] += s1;
  }
}

// Every activation is z > 0 ? z : z * negative_slope (1 for none, 0 for ReLU), written without
// branches (max/min, and a 0/1 gate for the gradient) so that GCC vectorizes the loops; the gate
// at z == 0 is the negative side's, as in PyTorch.
inline float negative_slope(Activation a, float slope) {
  return a == Activation::kRelu ? 0.0f : (a == Activation::kLeakyRelu ? slope : 1.0f);
}

constexpr int64_t kChunk = 256;  // elements of a segment processed through a float scratch

// Per-group (mean, rstd) of the forward: computed from x, or taken from the running stats.
template <typename T, bool CI>
void compute_statistics(const NormActFwdArgs& a, std::vector<float>& mean, std::vector<float>& rstd) {
  const Shape4& s = a.shape;
  const int64_t groups = per_sample(a.stats) ? s.N * s.C : s.C;
  mean.assign(groups, 0.0f);
  rstd.assign(groups, 1.0f);
  if (a.stats == StatsMode::kNone) return;
  if (a.stats == StatsMode::kBatchEval) {
    for (int64_t c = 0; c < s.C; ++c) {
      mean[c] = a.running_mean[c];
      rstd[c] = 1.0f / std::sqrt(a.running_var[c] + a.eps);
    }
  } else {
    const T* x = static_cast<const T*>(a.x);
    std::vector<double> sum(groups), sum_sq(groups);
    reduce_per_group<CI>(s, per_sample(a.stats), a.num_threads, sum.data(), sum_sq.data(),
                         [&](const Segment<CI>& seg, double* acc0, double* acc1) {
      const T* xs = x + seg.offset(a.x_strides);
      accumulate<CI>(seg.len, acc0, acc1, [&](int64_t j, double& e0, double& e1) {
        e0 = to_float(xs[j]);
        e1 = e0 * e0;
      });
    });
    const double count = double(per_sample(a.stats) ? s.H * s.W : s.N * s.H * s.W);
    for (int64_t g = 0; g < groups; ++g) {
      const double m = sum[g] / count;
      const double var = std::max(sum_sq[g] / count - m * m, 0.0);
      mean[g] = float(m);
      rstd[g] = float(1.0 / std::sqrt(var + double(a.eps)));
      if (a.stats == StatsMode::kBatchTrain && a.running_mean != nullptr) {
        // nn.BatchNorm2d: exponential average with the unbiased variance.
        a.running_mean[g] = float((1.0 - a.momentum) * a.running_mean[g] + a.momentum * m);
        a.running_var[g] = float((1.0 - a.momentum) * a.running_var[g] +
                                 a.momentum * var * count / (count - 1.0));
      }
    }
  }
  if (a.mean != nullptr) {
    std::copy(mean.begin(), mean.end(), a.mean);
    std::copy(rstd.begin(), rstd.end(), a.rstd);
  }
}

template <typename T, bool CI>
void forward(const NormActFwdArgs& a) {
  const Shape4& s = a.shape;
  std::vector<float> mean, rstd;
  compute_statistics<T, CI>(a, mean, rstd);
  // Fold norm and affine into y = (x - mean) * scale + bias. Not x * scale + (bias - mean *
  // scale): with a large mean both products are large and their sum cancels (a constant
  // channel at 1e3 came out off by ~1e-2); x - mean is exact near the mean.
  const int64_t groups = int64_t(mean.size());
  std::vector<float> scale(groups), shift(groups);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c = g % s.C;
    scale[g] = rstd[g] * (a.weight ? a.weight[c] : 1.0f);
    shift[g] = a.bias ? a.bias[c] : 0.0f;
  }
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const float negative = negative_slope(a.activation, a.slope);
  for_each_segment<CI>(s, a.num_threads, [&](const Segment<CI>& seg) {
    const int64_t g0 = (per_sample(a.stats) ? seg.n * s.C : 0) + seg.c0;
    for (int64_t j0 = 0; j0 < seg.len; j0 += kChunk) {
      const int64_t len = std::min(kChunk, seg.len - j0);
      const T* xs = x + seg.offset(a.x_strides) + j0;
      const float* m = mean.data() + g0 + (CI ? j0 : 0);
      const float* sc = scale.data() + g0 + (CI ? j0 : 0);
      const float* sh = shift.data() + g0 + (CI ? j0 : 0);
      float y[kChunk];
      for (int64_t j = 0; j < len; ++j) {
        const float z = (to_float(xs[j]) - m[CI ? j : 0]) * sc[CI ? j : 0] + sh[CI ? j : 0];
        y[j] = std::max(z, 0.0f) + negative * std::min(z, 0.0f);  // exact, and vectorizes
      }
      if (a.dropout.enabled) {
        for (int64_t j = 0; j < len; ++j) y[j] *= a.dropout.factor(seg.index(s, j0 + j));
      }
      T* os = out + seg.offset(a.out_strides) + j0;
      for (int64_t j = 0; j < len; ++j) os[j] = from_float<T>(y[j]);
    }
  });
}

template <typename T, bool CI>
void backward(const NormActBwdArgs& a) {
  const Shape4& s = a.shape;
  const bool by_sample = per_sample(a.stats);
  const bool normalizes_over_x = a.stats == StatsMode::kInstance || a.stats == StatsMode::kBatchTrain;
  const int64_t groups = by_sample ? s.N * s.C : s.C;
  // Per-group constants: statistics (identity for no norm) and the affine parameters.
  std::vector<float> mean(groups, 0.0f), rstd(groups, 1.0f), weight(groups, 1.0f), bias(groups, 0.0f);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c = g % s.C;
    if (a.stats != StatsMode::kNone) {
      mean[g] = a.mean[g];
      rstd[g] = a.rstd[g];
    }
    if (a.weight) weight[g] = a.weight[c];
    if (a.bias) bias[g] = a.bias[c];
  }
  const T* x = static_cast<const T*>(a.x);
  const T* grad_out = static_cast<const T*>(a.grad_out);
  const float negative = negative_slope(a.activation, a.slope);
  // Rebuilds x_hat and dz (the gradient at z = x_hat * w + b: dropout mask and activation gate
  // recomputed from x) for elements [j0, j0 + len) of a segment; returns the segment's group.
  auto rebuild = [&](const Segment<CI>& seg, int64_t j0, int64_t len, float* x_hat, float* dz) {
    const int64_t g0 = (by_sample ? seg.n * s.C : 0) + seg.c0 + (CI ? j0 : 0);
    const T* xs = x + seg.offset(a.x_strides) + j0;
    const T* gs = grad_out + seg.offset(a.grad_out_strides) + j0;
    for (int64_t j = 0; j < len; ++j) dz[j] = to_float(gs[j]);
    if (a.dropout.enabled) {
      for (int64_t j = 0; j < len; ++j) dz[j] *= a.dropout.factor(seg.index(s, j0 + j));
    }
    const float *m = mean.data() + g0, *r = rstd.data() + g0;
    const float *w = weight.data() + g0, *b = bias.data() + g0;
    for (int64_t j = 0; j < len; ++j) {
      const int64_t k = CI ? j : 0;
      x_hat[j] = (to_float(xs[j]) - m[k]) * r[k];
      const float gate = float(x_hat[j] * w[k] + b[k] > 0.0f);
      dz[j] *= gate + (1.0f - gate) * negative;
    }
    return g0;
  };
  // Pass 1: sum(dz) and sum(dz * x_hat) per group, for the weight/bias gradients and for the
  // terms of grad_x that the statistics contribute.
  std::vector<double> sum_dz(groups, 0.0), sum_dz_xhat(groups, 0.0);
  const bool affine = a.grad_weight != nullptr;
  if (affine || normalizes_over_x) {
    reduce_per_group<CI>(s, by_sample, a.num_threads, sum_dz.data(), sum_dz_xhat.data(),
                         [&](const Segment<CI>& seg, double* acc0, double* acc1) {
      for (int64_t j0 = 0; j0 < seg.len; j0 += kChunk) {
        const int64_t len = std::min(kChunk, seg.len - j0);
        float x_hat[kChunk], dz[kChunk];
        rebuild(seg, j0, len, x_hat, dz);
        accumulate<CI>(len, acc0 + (CI ? j0 : 0), acc1 + (CI ? j0 : 0),
                       [&](int64_t j, double& e0, double& e1) {
          e0 = dz[j];
          e1 = double(dz[j]) * x_hat[j];
        });
      }
    });
  }
  if (affine) {
    for (int64_t c = 0; c < s.C; ++c) {
      double gw = 0, gb = 0;
      for (int64_t g = c; g < groups; g += s.C) {
        gw += sum_dz_xhat[g];
        gb += sum_dz[g];
      }
      a.grad_weight[c] = float(gw);
      a.grad_bias[c] = float(gb);
    }
  }
  // Pass 2: grad_x = k_dz * dz + k_const + k_xhat * x_hat per group.
  std::vector<float> k_dz(groups), k_const(groups, 0.0f), k_xhat(groups, 0.0f);
  const double count = double(by_sample ? s.H * s.W : s.N * s.H * s.W);
  for (int64_t g = 0; g < groups; ++g) {
    k_dz[g] = weight[g] * rstd[g];
    if (normalizes_over_x) {
      k_const[g] = float(-double(k_dz[g]) * sum_dz[g] / count);
      k_xhat[g] = float(-double(k_dz[g]) * sum_dz_xhat[g] / count);
    }
  }
  T* grad_x = static_cast<T*>(a.grad_x);
  for_each_segment<CI>(s, a.num_threads, [&](const Segment<CI>& seg) {
    for (int64_t j0 = 0; j0 < seg.len; j0 += kChunk) {
      const int64_t len = std::min(kChunk, seg.len - j0);
      float x_hat[kChunk], dz[kChunk];
      const int64_t g0 = rebuild(seg, j0, len, x_hat, dz);
      T* gxs = grad_x + seg.offset(a.grad_x_strides) + j0;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t k = g0 + (CI ? j : 0);
        gxs[j] = from_float<T>(k_dz[k] * dz[j] + k_const[k] + k_xhat[k] * x_hat[j]);
      }
    }
  });
}

// Channels-last segments when every tensor has unit channel stride (C == 1 counts), NCHW rows
// when every tensor has unit W stride; with both, the longer inner loop.
bool channels_inner(const Shape4& s, std::initializer_list<Strides4> tensors) {
  bool channels_ok = true, rows_ok = true;
  for (const Strides4& t : tensors) {
    channels_ok = channels_ok && (t.c == 1 || s.C == 1);
    rows_ok = rows_ok && (t.w == 1 || s.W == 1);
  }
  CHECK_ARG(channels_ok || rows_ok, "norm_act: every tensor must have unit stride along C "
            "(channels-last) or along W (NCHW)");
  return channels_ok && (!rows_ok || s.C >= s.W);
}

// When every tensor stores each (n, c) plane's rows back to back with unit W stride (h stride
// == W), the plane is one row of H * W elements: longer inner loops for small NCHW maps. The
// logical NCHW index, and so the dropout counter, is unchanged by this view. A W == 1 map whose
// W stride is not 1 (channels-last) stays as it is: merged, its rows would have that stride,
// and channels_inner would refuse a mix of it with an NCHW tensor that it accepts unmerged.
void collapse_spatial(Shape4& s, std::initializer_list<Strides4*> tensors) {
  for (const Strides4* t : tensors)
    if (t->w != 1 || t->h != s.W) return;
  for (Strides4* t : tensors) t->h = t->w * s.H * s.W;
  s.W *= s.H;
  s.H = 1;
}

}  // namespace

void norm_act_fwd(const NormActFwdArgs& original) {
  NormActFwdArgs args = original;
  collapse_spatial(args.shape, {&args.x_strides, &args.out_strides});
  const bool ci = channels_inner(args.shape, {args.x_strides, args.out_strides});
  dispatch_storage(args.dtype, [&](auto storage) {
    using T = decltype(storage);
    ci ? forward<T, true>(args) : forward<T, false>(args);
  });
}

void norm_act_bwd(const NormActBwdArgs& original) {
  NormActBwdArgs args = original;
  collapse_spatial(args.shape, {&args.x_strides, &args.grad_out_strides, &args.grad_x_strides});
  const bool ci = channels_inner(args.shape, {args.x_strides, args.grad_out_strides, args.grad_x_strides});
  dispatch_storage(args.dtype, [&](auto storage) {
    using T = decltype(storage);
    ci ? backward<T, true>(args) : backward<T, false>(args);
  });
}

}  // namespace fastp2p::cpu
