// Dtype dispatch, done once per call: fn receives a value of the storage type.
#pragma once
#include "../common/tensor_arg.h"
#include "storage.h"

namespace fastp2p::cpu {

template <typename Fn>
void dispatch_storage(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}); return;
    case DType::kBFloat16: fn(BFloat16{}); return;
    case DType::kFloat16: fn(Float16{}); return;
  }
  fail("unsupported dtype code ", static_cast<int>(dtype));
}

// Below this many elements one thread is faster than waking the pool.
constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace fastp2p::cpu
