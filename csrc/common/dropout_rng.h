// The counter-based dropout hash of fastp2p/ops/dropout_rng.py, bit for bit: element i (the
// logical NCHW flat index) is kept when mix(start + i) >= threshold, where
// start = mix(seed) + offset (mod 2**32, folded on the host, or on the device from tensors) and
// threshold = floor(p * 2**32).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FASTP2P_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTP2P_HOST_DEVICE inline
#endif

namespace fastp2p {

FASTP2P_HOST_DEVICE uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return h;
}

struct DropoutParams {
  bool enabled;        // p > 0
  uint32_t start;      // mix(seed & 0xFFFFFFFF) + offset, mod 2**32
  uint32_t threshold;  // floor(p * 2**32)
  float scale;         // 1 / (1 - p)
  // CUDA graphs: seed and offset read on the device when the kernel runs, so a replay after
  // the offset tensor advanced draws a fresh mask (null: `start` already holds them).
  const int64_t* seed_ptr;
  const int64_t* offset_ptr;

  FASTP2P_HOST_DEVICE DropoutParams resolved() const {
    DropoutParams d = *this;
    if (seed_ptr != nullptr) d.start = mix32(uint32_t(*seed_ptr)) + uint32_t(*offset_ptr);
    return d;
  }

  // The multiplier of element `index`: 0 when dropped, 1 / (1 - p) when kept.
  FASTP2P_HOST_DEVICE float factor(int64_t index) const {
    uint32_t bits = mix32(start + static_cast<uint32_t>(index));
    return scale * float(bits >= threshold);  // no branch: vectorizes on the CPU
  }
};

}  // namespace fastp2p
