// Fused norm + activation + dropout + channel-slice write on CUDA, forward and backward.
// NHWC is the fast layout: lanes of a warp cover consecutive 16-byte channel vectors of one
// pixel (coalesced), rows of pixels are split over warps and blocks. Statistics are per-thread
// Welford states merged across the warp with shuffles, across warps in shared memory, and
// across blocks by a small finalize kernel (deterministic: no atomics). Backward recomputes
// x_hat, the activation gate and the dropout mask instead of storing them. Any other layout
// runs the same kernels one element per lane (correct, not fast).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <utility>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace fastp2p::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block of the reduction kernels
constexpr int kThreads = kWarps * 32;
constexpr int kMaxSplits = 64;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half(v); }

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// VEC consecutive channels (one 16-byte load when VEC > 1: unit channel stride guaranteed).
template <typename T, int VEC>
__device__ __forceinline__ void load(const T* p, float (&v)[VEC]) {
  const Pack<T, VEC> pack = *reinterpret_cast<const Pack<T, VEC>*>(p);
#pragma unroll
  for (int k = 0; k < VEC; ++k) v[k] = to_float(pack.v[k]);
}

template <typename T, int VEC>
__device__ __forceinline__ void store(T* p, const float (&v)[VEC]) {
  Pack<T, VEC> pack;
#pragma unroll
  for (int k = 0; k < VEC; ++k) pack.v[k] = from_float<T>(v[k]);
  *reinterpret_cast<Pack<T, VEC>*>(p) = pack;
}

__device__ __forceinline__ float activate(Activation a, float slope, float z) {
  if (a == Activation::kRelu) return z > 0.0f ? z : 0.0f;
  if (a == Activation::kLeakyRelu) return z > 0.0f ? z : z * slope;
  return z;
}

__device__ __forceinline__ float activation_grad(Activation a, float slope, float z, float g) {
  if (a == Activation::kRelu) return z > 0.0f ? g : 0.0f;
  if (a == Activation::kLeakyRelu) return z > 0.0f ? g : g * slope;
  return g;
}

// Row r of a reduction group -> (n, h, w): a group is one sample (instance norm) or the batch.
struct RowMap {
  Shape4 s;
  bool per_sample;
  __device__ __forceinline__ int64_t rows() const { return per_sample ? s.H * s.W : s.N * s.H * s.W; }
  __device__ __forceinline__ void locate(int64_t group, int64_t r, int64_t& n, int64_t& h, int64_t& w) const {
    const int64_t hw = s.H * s.W;
    n = per_sample ? group : r / hw;
    const int64_t within = per_sample ? r : r % hw;
    h = within / s.W;
    w = within % s.W;
  }
};

__device__ __forceinline__ int64_t offset(const Strides4& st, int64_t n, int64_t c, int64_t h, int64_t w) {
  return n * st.n + c * st.c + h * st.h + w * st.w;
}

// Lanes of a warp: lanes_c along channel vectors, 32 / lanes_c along rows.
struct WarpShape {
  int lanes_c;
  __device__ __forceinline__ int lane_c() const { return (threadIdx.x & 31) % lanes_c; }
  __device__ __forceinline__ int lane_r() const { return (threadIdx.x & 31) / lanes_c; }
  __device__ __forceinline__ int lanes_r() const { return 32 / lanes_c; }
  __device__ __forceinline__ int warp() const { return threadIdx.x >> 5; }
};

struct Welford {
  float count, mean, m2;
  __device__ __forceinline__ void merge(float count_b, float mean_b, float m2_b) {
    const float total = count + count_b;
    if (total == 0.0f) return;
    const float delta = mean_b - mean, share = count_b / total;
    mean += delta * share;
    m2 += m2_b + delta * delta * count * share;
    count = total;
  }
};

// Forward pass 1: partial Welford states per (group, split, channel) -> partial[..., 3].
template <typename T, int VEC>
__global__ void norm_stats_partial_kernel(const T* __restrict__ x, Strides4 xs, RowMap map,
                                          WarpShape ws, int splits, float* __restrict__ partial) {
  __shared__ float shared[kWarps][32][3 * VEC];
  const int64_t C = map.s.C, group = blockIdx.y, split = blockIdx.z;
  const int64_t c0 = (int64_t(blockIdx.x) * ws.lanes_c + ws.lane_c()) * VEC;
  Welford state[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) state[k] = {0.0f, 0.0f, 0.0f};
  if (c0 < C) {
    const int64_t step = int64_t(kWarps) * ws.lanes_r() * splits;
    for (int64_t r = (split * kWarps + ws.warp()) * ws.lanes_r() + ws.lane_r(); r < map.rows(); r += step) {
      int64_t n, h, w;
      map.locate(group, r, n, h, w);
      float v[VEC];
      load<T, VEC>(x + offset(xs, n, c0, h, w), v);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        state[k].count += 1.0f;
        const float delta = v[k] - state[k].mean;
        state[k].mean += delta / state[k].count;
        state[k].m2 += delta * (v[k] - state[k].mean);
      }
    }
  }
  // Warp level: merge the lanes that share a channel vector (they differ in lane_r).
  for (int mask = ws.lanes_c; mask < 32; mask <<= 1) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float count_b = __shfl_xor_sync(0xFFFFFFFFu, state[k].count, mask);
      const float mean_b = __shfl_xor_sync(0xFFFFFFFFu, state[k].mean, mask);
      const float m2_b = __shfl_xor_sync(0xFFFFFFFFu, state[k].m2, mask);
      state[k].merge(count_b, mean_b, m2_b);
    }
  }
  if (ws.lane_r() == 0) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      shared[ws.warp()][ws.lane_c()][3 * k] = state[k].count;
      shared[ws.warp()][ws.lane_c()][3 * k + 1] = state[k].mean;
      shared[ws.warp()][ws.lane_c()][3 * k + 2] = state[k].m2;
    }
  }
  __syncthreads();
  if (ws.warp() != 0 || ws.lane_r() != 0 || c0 >= C) return;
  for (int other = 1; other < kWarps; ++other) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float* st = &shared[other][ws.lane_c()][3 * k];
      state[k].merge(st[0], st[1], st[2]);
    }
  }
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    float* out = partial + ((group * splits + split) * C + c0 + k) * 3;
    out[0] = state[k].count;
    out[1] = state[k].mean;
    out[2] = state[k].m2;
  }
}

// Forward pass 2: one thread per (group, channel) merges the splits (or reads the running
// stats in batch-norm eval), writes mean / rstd, updates the running stats in training.
__global__ void norm_stats_finalize_kernel(const float* __restrict__ partial, int splits, Shape4 s,
                                           int64_t groups, StatsMode mode, float eps, float momentum,
                                           float* __restrict__ mean, float* __restrict__ rstd,
                                           float* running_mean, float* running_var) {
  const int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= groups * s.C) return;
  if (mode == StatsMode::kBatchEval) {
    mean[index] = running_mean[index];
    rstd[index] = rsqrtf(running_var[index] + eps);
    return;
  }
  const int64_t group = index / s.C, c = index % s.C;
  double count = 0.0, m = 0.0, m2 = 0.0;
  for (int split = 0; split < splits; ++split) {
    const float* st = partial + ((group * splits + split) * s.C + c) * 3;
    const double total = count + st[0];
    if (st[0] == 0.0f) continue;
    const double delta = double(st[1]) - m;
    m += delta * st[0] / total;
    m2 += double(st[2]) + delta * delta * count * st[0] / total;
    count = total;
  }
  const double var = m2 / count;
  mean[index] = float(m);
  rstd[index] = float(1.0 / sqrt(var + double(eps)));
  if (mode == StatsMode::kBatchTrain && running_mean != nullptr) {
    running_mean[c] = float((1.0 - momentum) * running_mean[c] + momentum * m);
    running_var[c] = float((1.0 - momentum) * running_var[c] + momentum * m2 / (count - 1.0));
  }
}

// Forward pass 3: y = dropout(act((x - mean) * rstd * w + b)) into the destination slice.
template <typename T, int VEC>
__global__ void norm_act_apply_kernel(NormActFwdArgs a, bool per_sample) {
  const Shape4 s = a.shape;
  const int64_t vectors = s.C / VEC, total = s.N * s.H * s.W * vectors;
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const DropoutParams dropout = a.dropout.resolved();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pixel = i / vectors, c0 = (i % vectors) * VEC;
    const int64_t w = pixel % s.W, h = (pixel / s.W) % s.H, n = pixel / (s.W * s.H);
    float v[VEC];
    load<T, VEC>(x + offset(a.x_strides, n, c0, h, w), v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const int64_t c = c0 + k, g = per_sample ? n * s.C + c : c;
      const float m = a.mean ? a.mean[g] : 0.0f, r = a.rstd ? a.rstd[g] : 1.0f;
      const float z = (v[k] - m) * r * (a.weight ? a.weight[c] : 1.0f) + (a.bias ? a.bias[c] : 0.0f);
      v[k] = activate(a.activation, a.slope, z);
      if (dropout.enabled) v[k] *= dropout.factor(((n * s.C + c) * s.H + h) * s.W + w);
    }
    store<T, VEC>(out + offset(a.out_strides, n, c0, h, w), v);
  }
}


// Rebuilds, from x and the saved statistics, x_hat and dz (the gradient at z = x_hat * w + b:
// dropout mask and activation gate recomputed) for VEC channels of pixel (n, h, w).
template <typename T, int VEC>
__device__ __forceinline__ void rebuild(const NormActBwdArgs& a, const DropoutParams& dropout,
                                        bool per_sample, int64_t n, int64_t c0, int64_t h,
                                        int64_t w, float (&x_hat)[VEC], float (&dz)[VEC]) {
  const Shape4 s = a.shape;
  float xv[VEC], gv[VEC];
  load<T, VEC>(static_cast<const T*>(a.x) + offset(a.x_strides, n, c0, h, w), xv);
  load<T, VEC>(static_cast<const T*>(a.grad_out) + offset(a.grad_out_strides, n, c0, h, w), gv);
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    const int64_t c = c0 + k, g = per_sample ? n * s.C + c : c;
    const float m = a.mean ? a.mean[g] : 0.0f, r = a.rstd ? a.rstd[g] : 1.0f;
    x_hat[k] = (xv[k] - m) * r;
    float grad = gv[k];
    if (dropout.enabled) grad *= dropout.factor(((n * s.C + c) * s.H + h) * s.W + w);
    const float z = x_hat[k] * (a.weight ? a.weight[c] : 1.0f) + (a.bias ? a.bias[c] : 0.0f);
    dz[k] = activation_grad(a.activation, a.slope, z, grad);
  }
}

// Backward pass 1: partial sums of dz and dz * x_hat per (group, split, channel) -> partial[..., 2].
template <typename T, int VEC>
__global__ void norm_act_bwd_partial_kernel(NormActBwdArgs a, RowMap map, WarpShape ws, int splits,
                                            float* __restrict__ partial) {
  __shared__ float shared[kWarps][32][2 * VEC];
  const int64_t C = map.s.C, group = blockIdx.y, split = blockIdx.z;
  const int64_t c0 = (int64_t(blockIdx.x) * ws.lanes_c + ws.lane_c()) * VEC;
  float sum_dz[VEC] = {}, sum_dz_xhat[VEC] = {};
  const DropoutParams dropout = a.dropout.resolved();
  if (c0 < C) {
    const int64_t step = int64_t(kWarps) * ws.lanes_r() * splits;
    for (int64_t r = (split * kWarps + ws.warp()) * ws.lanes_r() + ws.lane_r(); r < map.rows(); r += step) {
      int64_t n, h, w;
      map.locate(group, r, n, h, w);
      float x_hat[VEC], dz[VEC];
      rebuild<T, VEC>(a, dropout, map.per_sample, n, c0, h, w, x_hat, dz);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        sum_dz[k] += dz[k];
        sum_dz_xhat[k] += dz[k] * x_hat[k];
      }
    }
  }
  for (int mask = ws.lanes_c; mask < 32; mask <<= 1) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      sum_dz[k] += __shfl_xor_sync(0xFFFFFFFFu, sum_dz[k], mask);
      sum_dz_xhat[k] += __shfl_xor_sync(0xFFFFFFFFu, sum_dz_xhat[k], mask);
    }
  }
  if (ws.lane_r() == 0) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      shared[ws.warp()][ws.lane_c()][2 * k] = sum_dz[k];
      shared[ws.warp()][ws.lane_c()][2 * k + 1] = sum_dz_xhat[k];
    }
  }
  __syncthreads();
  if (ws.warp() != 0 || ws.lane_r() != 0 || c0 >= C) return;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    float s0 = 0.0f, s1 = 0.0f;
    for (int wp = 0; wp < kWarps; ++wp) {
      s0 += shared[wp][ws.lane_c()][2 * k];
      s1 += shared[wp][ws.lane_c()][2 * k + 1];
    }
    float* out = partial + ((group * splits + split) * C + c0 + k) * 2;
    out[0] = s0;
    out[1] = s1;
  }
}

// Backward pass 2: one thread per channel: grad_weight / grad_bias, and per group the
// coefficients of grad_x = k_dz * dz + k_const + k_xhat * x_hat -> coeffs[group, c, 3].
__global__ void norm_act_bwd_finalize_kernel(const float* __restrict__ partial, int splits, Shape4 s,
                                             int64_t groups, bool normalizes, const float* weight,
                                             const float* rstd, bool per_sample, float* grad_weight,
                                             float* grad_bias, float* __restrict__ coeffs) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= s.C) return;
  const double count = double(per_sample ? s.H * s.W : s.N * s.H * s.W);
  double total_dz = 0.0, total_dz_xhat = 0.0;
  for (int64_t group = 0; group < groups; ++group) {
    double s0 = 0.0, s1 = 0.0;
    for (int split = 0; partial != nullptr && split < splits; ++split) {
      const float* st = partial + ((group * splits + split) * s.C + c) * 2;
      s0 += st[0];
      s1 += st[1];
    }
    total_dz += s0;
    total_dz_xhat += s1;
    const int64_t g = per_sample ? group * s.C + c : c;
    const double k_dz = double(weight ? weight[c] : 1.0f) * (rstd ? rstd[g] : 1.0f);
    float* k = coeffs + (group * s.C + c) * 3;
    k[0] = float(k_dz);
    k[1] = normalizes ? float(-k_dz * s0 / count) : 0.0f;
    k[2] = normalizes ? float(-k_dz * s1 / count) : 0.0f;
  }
  if (grad_weight != nullptr) {
    grad_weight[c] = float(total_dz_xhat);
    grad_bias[c] = float(total_dz);
  }
}

// Backward pass 3: grad_x.
template <typename T, int VEC>
__global__ void norm_act_bwd_apply_kernel(NormActBwdArgs a, bool per_sample, const float* __restrict__ coeffs) {
  const Shape4 s = a.shape;
  const int64_t vectors = s.C / VEC, total = s.N * s.H * s.W * vectors;
  const DropoutParams dropout = a.dropout.resolved();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pixel = i / vectors, c0 = (i % vectors) * VEC;
    const int64_t w = pixel % s.W, h = (pixel / s.W) % s.H, n = pixel / (s.W * s.H);
    float x_hat[VEC], dz[VEC], gx[VEC];
    rebuild<T, VEC>(a, dropout, per_sample, n, c0, h, w, x_hat, dz);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float* kc = coeffs + ((per_sample ? n : 0) * s.C + c0 + k) * 3;
      gx[k] = kc[0] * dz[k] + kc[1] + kc[2] * x_hat[k];
    }
    store<T, VEC>(static_cast<T*>(a.grad_x) + offset(a.grad_x_strides, n, c0, h, w), gx);
  }
}

// -- host side ---------------------------------------------------------------------------------
void check_launch(const char* what) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
}

int splits_for(const Shape4& s, StatsMode stats) {
  const int64_t samples = per_sample(stats) ? s.N : 1;
  const int64_t rows = per_sample(stats) ? s.H * s.W : s.N * s.H * s.W;
  const int64_t tiles = (s.C + 31) / 32;
  const int64_t wanted = (1024 + tiles * samples - 1) / (tiles * samples);  // ~1024 blocks
  const int64_t by_rows = std::max<int64_t>(1, rows / (kThreads * 2));      // >= 512 rows a block
  return int(std::clamp<int64_t>(std::min(wanted, by_rows), 1, kMaxSplits));
}

// 16-byte vectors when every tensor has unit channel stride and aligned pixels; else 1.
template <typename T>
int vector_width(const Shape4& s, std::initializer_list<std::pair<const void*, Strides4>> tensors) {
  constexpr int kVec = 16 / sizeof(T);
  if (s.C % kVec != 0) return 1;
  for (const auto& [data, st] : tensors) {
    if (reinterpret_cast<std::uintptr_t>(data) % 16 != 0 || st.c != 1 || st.n % kVec != 0 ||
        st.h % kVec != 0 || st.w % kVec != 0)
      return 1;
  }
  return kVec;
}

int lanes_for(int64_t vectors) {
  int lanes = 1;
  while (lanes < 32 && lanes < vectors) lanes <<= 1;
  return lanes;
}

int apply_blocks(int64_t work) {
  return int(std::min<int64_t>((work + 255) / 256, 65535LL * 8));
}

// Launches on the tensors' device, restoring the caller's current device afterwards (this
// extension has its own static CUDA runtime, so torch's device guard does not reach it).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device && cudaSetDevice(device) != cudaSuccess)
      throw std::runtime_error("cannot select CUDA device " + std::to_string(device));
  }
  ~DeviceGuard() {
    int current = -1;
    if (previous_ >= 0 && cudaGetDevice(&current) == cudaSuccess && current != previous_)
      cudaSetDevice(previous_);
  }

 private:
  int previous_ = -1;
};

template <typename Fn>
void dispatch_storage(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}); return;
    case DType::kBFloat16: fn(__nv_bfloat16{}); return;
    case DType::kFloat16: fn(__half{}); return;
  }
  fail("unsupported dtype code ", static_cast<int>(dtype));
}

template <typename T, int VEC>
void forward(const NormActFwdArgs& a, cudaStream_t stream, float* workspace) {
  const Shape4& s = a.shape;
  const bool by_sample = per_sample(a.stats);
  const int64_t samples = by_sample ? s.N : 1;
  if (a.stats == StatsMode::kInstance || a.stats == StatsMode::kBatchTrain) {
    const int splits = splits_for(s, a.stats);
    const WarpShape ws{lanes_for(s.C / VEC)};
    const dim3 grid(unsigned((s.C / VEC + ws.lanes_c - 1) / ws.lanes_c), unsigned(samples), unsigned(splits));
    norm_stats_partial_kernel<T, VEC><<<grid, kThreads, 0, stream>>>(
        static_cast<const T*>(a.x), a.x_strides, RowMap{s, by_sample}, ws, splits, workspace);
    check_launch("norm_stats_partial_kernel");
    norm_stats_finalize_kernel<<<unsigned((samples * s.C + 255) / 256), 256, 0, stream>>>(
        workspace, splits, s, samples, a.stats, a.eps, a.momentum, a.mean, a.rstd, a.running_mean, a.running_var);
    check_launch("norm_stats_finalize_kernel");
  } else if (a.stats == StatsMode::kBatchEval) {
    norm_stats_finalize_kernel<<<unsigned((s.C + 255) / 256), 256, 0, stream>>>(
        nullptr, 0, s, 1, a.stats, a.eps, a.momentum, a.mean, a.rstd, a.running_mean, a.running_var);
    check_launch("norm_stats_finalize_kernel");
  }
  norm_act_apply_kernel<T, VEC><<<apply_blocks(s.numel() / VEC), 256, 0, stream>>>(a, by_sample);
  check_launch("norm_act_apply_kernel");
}

template <typename T, int VEC>
void backward(const NormActBwdArgs& a, cudaStream_t stream, float* workspace) {
  const Shape4& s = a.shape;
  const bool by_sample = per_sample(a.stats);
  const bool normalizes = a.stats == StatsMode::kInstance || a.stats == StatsMode::kBatchTrain;
  const int64_t samples = by_sample ? s.N : 1;
  const int splits = splits_for(s, a.stats);
  float* partial = nullptr;
  float* coeffs = workspace;
  if (normalizes || a.grad_weight != nullptr) {
    partial = workspace;
    coeffs = workspace + samples * splits * s.C * 2;
    const WarpShape ws{lanes_for(s.C / VEC)};
    const dim3 grid(unsigned((s.C / VEC + ws.lanes_c - 1) / ws.lanes_c), unsigned(samples), unsigned(splits));
    norm_act_bwd_partial_kernel<T, VEC><<<grid, kThreads, 0, stream>>>(a, RowMap{s, by_sample}, ws, splits, partial);
    check_launch("norm_act_bwd_partial_kernel");
  }
  norm_act_bwd_finalize_kernel<<<unsigned((s.C + 255) / 256), 256, 0, stream>>>(
      partial, splits, s, samples, normalizes, a.weight, a.rstd, by_sample, a.grad_weight, a.grad_bias, coeffs);
  check_launch("norm_act_bwd_finalize_kernel");
  norm_act_bwd_apply_kernel<T, VEC><<<apply_blocks(s.numel() / VEC), 256, 0, stream>>>(a, by_sample, coeffs);
  check_launch("norm_act_bwd_apply_kernel");
}

}  // namespace

int64_t norm_act_fwd_workspace_floats(const Shape4& s, StatsMode stats) {
  if (stats != StatsMode::kInstance && stats != StatsMode::kBatchTrain) return 0;
  return (per_sample(stats) ? s.N : 1) * splits_for(s, stats) * s.C * 3;
}

int64_t norm_act_bwd_workspace_floats(const Shape4& s, StatsMode stats) {
  const int64_t samples = per_sample(stats) ? s.N : 1;
  return samples * splits_for(s, stats) * s.C * 2 + samples * s.C * 3;
}

void norm_act_fwd(const NormActFwdArgs& args, std::uintptr_t stream, float* workspace) {
  DeviceGuard guard(args.device);
  dispatch_storage(args.dtype, [&](auto storage) {
    using T = decltype(storage);
    const int vec = vector_width<T>(args.shape, {{args.x, args.x_strides}, {args.out, args.out_strides}});
    auto* s = reinterpret_cast<cudaStream_t>(stream);
    vec > 1 ? forward<T, 16 / sizeof(T)>(args, s, workspace) : forward<T, 1>(args, s, workspace);
  });
}

void norm_act_bwd(const NormActBwdArgs& args, std::uintptr_t stream, float* workspace) {
  DeviceGuard guard(args.device);
  dispatch_storage(args.dtype, [&](auto storage) {
    using T = decltype(storage);
    const int vec = vector_width<T>(args.shape, {{args.x, args.x_strides},
                                                 {args.grad_out, args.grad_out_strides},
                                                 {args.grad_x, args.grad_x_strides}});
    auto* s = reinterpret_cast<cudaStream_t>(stream);
    vec > 1 ? backward<T, 16 / sizeof(T)>(args, s, workspace) : backward<T, 1>(args, s, workspace);
  });
}

}  // namespace fastp2p::cuda
