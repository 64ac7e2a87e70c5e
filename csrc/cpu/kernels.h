// CPU kernels of fastp2p._C (OpenMP when the build found it).
#pragma once
#include <cstdint>

#include "../common/norm_act_params.h"

namespace fastp2p::cpu {

void norm_act_fwd(const NormActFwdArgs& args);
void norm_act_bwd(const NormActBwdArgs& args);

enum class GanLossMode : int { kVanilla = 0, kLsgan = 1, kWgangp = 2 };

// Dense tensors viewed as flat arrays of numel elements (the launcher guarantees matching layouts).
void gan_loss_fwd(DType dtype, const void* logits, void* grad_logits, int64_t numel,
                  GanLossMode mode, bool target_is_real, float* loss, int num_threads);
void l1_loss_fwd(DType dtype, const void* x, const void* y, void* grad_x, int64_t numel,
                 float* loss, int num_threads);

// Transposed-convolution col2im (float32, dense): cols is the GEMM of NHWC input rows with the
// weight seen as an (in_channels, channels * kernel^2) matrix in its memory order —
// (batch, in_height, in_width, channels, kernel, kernel) when taps_minor (a contiguous weight),
// (batch, in_height, in_width, kernel, kernel, channels) otherwise (a channels-last weight) —
// and out is (batch, out_height, out_width, channels). No output padding or dilation; bias may
// be null.
struct Col2imArgs {
  const float* cols;
  const float* bias;
  float* out;
  int64_t batch, in_height, in_width, out_height, out_width, channels;
  int kernel, stride, padding, num_threads;
  bool taps_minor;
};
void col2im_transposed(const Col2imArgs& args);

}  // namespace fastp2p::cpu
