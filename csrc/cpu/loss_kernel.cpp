// GAN loss (BCE-with-logits / MSE / Wasserstein) and L1 loss with their gradients, in one pass:
// each element's loss term and its gradient come from the same load. Sums in float64.
#include <cmath>

#include "dispatch.h"
#include "kernels.h"

namespace fastp2p::cpu {
namespace {

// Loss term of one logit and d(mean of terms)/d(logit) for a mean over 1 / inv_n terms,
// against target t in {0, 1}.
inline void gan_term(GanLossMode mode, float t, float x, float inv_n, double& term,
                     float& grad) {
  switch (mode) {
    case GanLossMode::kVanilla: {
      // (1 - t) x + max(-x, 0) + log(1 + exp(-|x|)), torch's stable form (= max(x, 0) - x t
      // + ..., but with torch's inf or nan at infinite logits); gradient sigmoid(x) - t.
      const float e = std::exp(-std::fabs(x));
      term = double(1.0f - t) * x + double(std::fmax(-x, 0.0f)) + std::log1p(double(e));
      const float sigmoid = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      grad = (sigmoid - t) * inv_n;
      return;
    }
    case GanLossMode::kLsgan: {
      const float d = x - t;
      term = double(d) * d;
      grad = d * (2.0f * inv_n);  // as torch: 2 d alone overflows for |d| > FLT_MAX / 2
      return;
    }
    case GanLossMode::kWgangp: {
      const float sign = t > 0.5f ? -1.0f : 1.0f;  // -mean for real, +mean for fake
      term = double(sign) * x;
      grad = sign * inv_n;
      return;
    }
  }
}

template <typename T>
void gan_loss(const T* logits, T* grad, int64_t numel, GanLossMode mode, bool real, float* loss,
              int num_threads) {
  const float target = real ? 1.0f : 0.0f;
  const float inv_n = 1.0f / float(numel);
  double total = 0.0;
#pragma omp parallel for num_threads(num_threads) reduction(+ : total) if (numel > kParallelGrain)
  for (int64_t i = 0; i < numel; ++i) {
    double term = 0.0;
    float g = 0.0f;
    gan_term(mode, target, to_float(logits[i]), inv_n, term, g);
    total += term;
    grad[i] = from_float<T>(g);
  }
  *loss = float(total / double(numel));
}

template <typename T>
void l1_loss(const T* x, const T* y, T* grad, int64_t numel, float* loss, int num_threads) {
  const float inv_n = 1.0f / float(numel);
  double total = 0.0;
#pragma omp parallel for num_threads(num_threads) reduction(+ : total) if (numel > kParallelGrain)
  for (int64_t i = 0; i < numel; ++i) {
    const float d = to_float(x[i]) - to_float(y[i]);
    total += std::fabs(double(d));
    // sign(d) / n, with sign(0) = 0 as torch.nn.L1Loss's backward
    grad[i] = from_float<T>(d > 0.0f ? inv_n : (d < 0.0f ? -inv_n : 0.0f));
  }
  *loss = float(total / double(numel));
}

}  // namespace

void gan_loss_fwd(DType dtype, const void* logits, void* grad_logits, int64_t numel,
                  GanLossMode mode, bool target_is_real, float* loss, int num_threads) {
  dispatch_storage(dtype, [&](auto storage) {
    using T = decltype(storage);
    gan_loss(static_cast<const T*>(logits), static_cast<T*>(grad_logits), numel, mode,
             target_is_real, loss, num_threads);
  });
}

void l1_loss_fwd(DType dtype, const void* x, const void* y, void* grad_x, int64_t numel,
                 float* loss, int num_threads) {
  dispatch_storage(dtype, [&](auto storage) {
    using T = decltype(storage);
    l1_loss(static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(grad_x), numel,
            loss, num_threads);
  });
}

}  // namespace fastp2p::cpu
