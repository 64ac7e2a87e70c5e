// Plain-data arguments of the norm-act kernels, shared by the CPU and CUDA implementations.
// Shapes are logical NCHW; every tensor argument carries its own element strides.
#pragma once
#include <cstdint>

#include "dropout_rng.h"
#include "tensor_arg.h"

namespace fastp2p {

// Where the statistics come from: per (n, c) plane, per channel over the batch (training, or
// batch norm without running stats), the running stats (batch-norm eval), or no norm at all.
enum class StatsMode : int { kInstance = 0, kBatchTrain = 1, kBatchEval = 2, kNone = 3 };
enum class Activation : int { kNone = 0, kRelu = 1, kLeakyRelu = 2 };

// Instance norm keeps statistics per (n, c), every other mode per channel.
inline bool per_sample(StatsMode stats) { return stats == StatsMode::kInstance; }

struct Shape4 {
  int64_t N, C, H, W;
  int64_t numel() const { return N * C * H * W; }
};

struct Strides4 {
  int64_t n, c, h, w;
};

inline Strides4 strides4(const TensorArg& t) {
  return {t.strides[0], t.strides[1], t.strides[2], t.strides[3]};
}

struct NormActFwdArgs {
  DType dtype;
  Shape4 shape;
  const void* x;        // (N, C, H, W) conv output
  Strides4 x_strides;
  void* out;            // (N, C, H, W) view of the destination slice (already at the channel offset)
  Strides4 out_strides;
  const float* weight;  // (C,) or null (no affine)
  const float* bias;    // (C,) or null
  float* running_mean;  // (C,) or null; updated in kBatchTrain, read in kBatchEval
  float* running_var;
  float* mean;          // out: (N, C) for kInstance, (C,) for batch modes, unused for kNone
  float* rstd;
  StatsMode stats;
  float momentum, eps;
  Activation activation;
  float slope;
  DropoutParams dropout;
  int num_threads;      // CPU only: torch's intra-op thread count
  int device;           // CUDA only: the device index of the tensors
};

struct NormActBwdArgs {
  DType dtype;
  Shape4 shape;
  const void* grad_out;  // (N, C, H, W): the slice of the output gradient
  Strides4 grad_out_strides;
  const void* x;
  Strides4 x_strides;
  void* grad_x;
  Strides4 grad_x_strides;
  const float* weight;  // (C,) or null
  const float* bias;    // (C,) or null
  const float* mean;    // saved statistics, as norm_act_fwd returned them
  const float* rstd;
  float* grad_weight;   // out: (C,) float32 or null (no affine)
  float* grad_bias;
  StatsMode stats;
  Activation activation;
  float slope;
  DropoutParams dropout;
  int num_threads;
  int device;
};

}  // namespace fastp2p
