// How a tensor crosses from Python: no torch headers, just a data pointer, a dtype code, sizes,
// strides (in elements) and a device index (-1 = CPU). The Python side (fastp2p/ops/backends/cpp.py)
// builds the tuple; the codes below must match its _DTYPE_CODES table.
#pragma once
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"

namespace fastp2p {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
  }
  return "unknown";
}

using TensorTuple = std::tuple<std::uintptr_t, int, std::vector<int64_t>, std::vector<int64_t>, int>;

struct TensorArg {
  void* data;
  DType dtype;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  int device;  // -1: CPU; otherwise the CUDA device index

  explicit TensorArg(const TensorTuple& t)
      : data(reinterpret_cast<void*>(std::get<0>(t))),
        dtype(static_cast<DType>(std::get<1>(t))),
        sizes(std::get<2>(t)),
        strides(std::get<3>(t)),
        device(std::get<4>(t)) {
    CHECK_ARG(std::get<1>(t) >= 0 && std::get<1>(t) <= 2,
              "dtype code must be 0 (float32), 1 (bfloat16) or 2 (float16), got ", std::get<1>(t));
    CHECK_ARG(sizes.size() == strides.size(), "a tensor needs one stride per dimension");
  }

  bool is_cuda() const { return device >= 0; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : sizes) n *= s;
    return n;
  }
};

inline std::optional<TensorArg> optional_arg(const std::optional<TensorTuple>& t) {
  if (!t) return std::nullopt;
  return TensorArg(*t);
}

}  // namespace fastp2p
