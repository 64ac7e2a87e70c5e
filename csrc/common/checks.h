// Input checks at the extension boundary (apex's CHECK_* family). Each throws
// std::invalid_argument, which pybind11 turns into a Python ValueError, with what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastp2p {

template <typename... Parts>
[[noreturn]] inline void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

}  // namespace fastp2p

#define CHECK_ARG(cond, ...) \
  do { if (!(cond)) ::fastp2p::fail(__VA_ARGS__); } while (0)
#define CHECK_DIM(t, dims, name) \
  CHECK_ARG((t).sizes.size() == (dims), name, " must have ", (dims), " dimensions, got ", (t).sizes.size())
#define CHECK_SIZE(t, dim, size, name) \
  CHECK_ARG((t).sizes[dim] == (size), name, " must have size ", (size), " in dimension ", (dim), \
            ", got ", (t).sizes[dim])
#define CHECK_DTYPE(t, expected, name) \
  CHECK_ARG((t).dtype == (expected), name, " must have dtype ", dtype_name(expected), ", got ", \
            dtype_name((t).dtype))
#define CHECK_SAME_DEVICE(t, ref, name) \
  CHECK_ARG((t).device == (ref).device, name, " must be on the same device as x")
#define CHECK_CONTIGUOUS_1D(t, size, name)                                                     \
  do {                                                                                         \
    CHECK_DIM(t, 1, name);                                                                     \
    CHECK_SIZE(t, 0, size, name);                                                              \
    CHECK_ARG((t).strides[0] == 1 || (size) <= 1, name, " must be contiguous");              \
  } while (0)
