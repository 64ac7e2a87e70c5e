// Binding of the transposed-convolution col2im (CPU, float32): boundary checks, then the kernel.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/tensor_arg.h"
#include "cpu/kernels.h"

namespace py = pybind11;

namespace fastp2p {
namespace {

void check_dense_fp32_cpu(const TensorArg& t, const char* name) {
  CHECK_ARG(!t.is_cuda(), name, " must be a CPU tensor");
  CHECK_DTYPE(t, DType::kFloat32, name);
  int64_t expected = 1;
  for (int64_t d = int64_t(t.sizes.size()) - 1; d >= 0; --d) {
    CHECK_ARG(t.strides[d] == expected || t.sizes[d] == 1, name, " must be contiguous");
    expected *= t.sizes[d];
  }
}

void col2im_transposed(const TensorTuple& cols_t, const std::optional<TensorTuple>& bias_t,
                       const TensorTuple& out_t, int kernel, int stride, int padding,
                       bool taps_minor, int num_threads) {
  const TensorArg cols(cols_t), out(out_t);
  const auto bias = optional_arg(bias_t);
  CHECK_ARG(kernel > 0 && stride > 0 && padding >= 0, "kernel and stride must be positive and "
            "padding non-negative, got ", kernel, ", ", stride, ", ", padding);
  CHECK_DIM(cols, 4, "cols (batch, height, width, channels * kernel^2)");
  CHECK_DIM(out, 4, "out (batch, out_height, out_width, channels)");
  check_dense_fp32_cpu(cols, "cols");
  check_dense_fp32_cpu(out, "out");
  const int64_t channels = out.sizes[3];
  CHECK_SIZE(cols, 0, out.sizes[0], "cols");
  CHECK_SIZE(cols, 3, channels * kernel * kernel, "cols");
  const int64_t out_height = (cols.sizes[1] - 1) * stride - 2 * padding + kernel;
  const int64_t out_width = (cols.sizes[2] - 1) * stride - 2 * padding + kernel;
  CHECK_SIZE(out, 1, out_height, "out");
  CHECK_SIZE(out, 2, out_width, "out");
  if (bias) {
    check_dense_fp32_cpu(*bias, "bias");
    CHECK_CONTIGUOUS_1D(*bias, channels, "bias");
  }
  const cpu::Col2imArgs args{
      static_cast<const float*>(cols.data), bias ? static_cast<const float*>(bias->data) : nullptr,
      static_cast<float*>(out.data), cols.sizes[0], cols.sizes[1], cols.sizes[2], out_height,
      out_width, channels, kernel, stride, padding, num_threads > 0 ? num_threads : 1,
      taps_minor};
  py::gil_scoped_release release;
  cpu::col2im_transposed(args);
}

}  // namespace

void register_conv(py::module_& m) {
  using namespace py::literals;
  m.def("col2im_transposed", &col2im_transposed,
        "gather a transposed convolution's GEMM output into its NHWC output (+ bias); "
        "taps_minor: cols rows are (channel, tap) (contiguous weight), else (tap, channel)",
        "cols"_a,
        "bias"_a, "out"_a, "kernel"_a, "stride"_a, "padding"_a, "taps_minor"_a, "num_threads"_a);
}

}  // namespace fastp2p
