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

// body(i) for i in [0, count): on num_threads OpenMP threads when `parallel` (enough work to pay
// for waking them), else on this thread without entering the OpenMP runtime: a parallel region
// whose `if` clause is false still goes through it, and on small layers that cost more wall time
// than the work (benchmarks/NOTES.md, "Host cost per fused call").
template <typename Body>
void parallel_for(int64_t count, bool parallel, int num_threads, Body&& body) {
  if (parallel && num_threads > 1) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
  for (int64_t i = 0; i < count; ++i) body(i);
}

// body(begin, end) over [0, count) cut into one contiguous range per thread (as parallel_for
// decides whether to use them), for loops that derive each index's coordinates by counting
// from the range's first one instead of dividing per index.
template <typename Body>
void parallel_ranges(int64_t count, bool parallel, int num_threads, Body&& body) {
  const int64_t ranges = parallel && num_threads > 1 ? num_threads : 1;
  parallel_for(ranges, ranges > 1, num_threads, [&](int64_t r) {
    const int64_t begin = count * r / ranges, end = count * (r + 1) / ranges;
    if (begin < end) body(begin, end);
  });
}

}  // namespace fastp2p::cpu
