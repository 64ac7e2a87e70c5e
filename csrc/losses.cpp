// Binding of the fused loss launchers (CPU): loss and gradient in one pass over dense tensors.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/tensor_arg.h"
#include "cpu/kernels.h"

namespace py = pybind11;

namespace fastp2p {
namespace {

float* scalar_output(const TensorArg& loss) {
  CHECK_ARG(loss.numel() == 1, "loss output must have one element");
  CHECK_DTYPE(loss, DType::kFloat32, "loss output");
  return static_cast<float*>(loss.data);
}

void check_cpu_dense_like(const TensorArg& t, const TensorArg& ref, const char* name) {
  CHECK_ARG(!t.is_cuda(), name, " must be a CPU tensor (the C++ losses run on the CPU)");
  CHECK_ARG(t.sizes == ref.sizes, name, " must have the shape of the first input");
  CHECK_ARG(t.strides == ref.strides, name, " must have the strides of the first input");
  CHECK_DTYPE(t, ref.dtype, name);
}

void gan_loss_fwd(const TensorTuple& logits_t, const TensorTuple& grad_t, const TensorTuple& loss_t,
                  int mode, bool target_is_real, int num_threads) {
  const TensorArg logits(logits_t), grad(grad_t), loss(loss_t);
  check_cpu_dense_like(logits, logits, "logits");
  check_cpu_dense_like(grad, logits, "grad_logits");
  CHECK_ARG(mode >= 0 && mode <= 2, "mode must be 0..2 (vanilla, lsgan, wgangp), got ", mode);
  CHECK_ARG(logits.numel() > 0, "logits must not be empty");
  float* out = scalar_output(loss);
  py::gil_scoped_release release;
  cpu::gan_loss_fwd(logits.dtype, logits.data, grad.data, logits.numel(),
                    static_cast<cpu::GanLossMode>(mode), target_is_real, out, num_threads > 0 ? num_threads : 1);
}

void l1_loss_fwd(const TensorTuple& x_t, const TensorTuple& y_t, const TensorTuple& grad_t,
                 const TensorTuple& loss_t, int num_threads) {
  const TensorArg x(x_t), y(y_t), grad(grad_t), loss(loss_t);
  check_cpu_dense_like(x, x, "x");
  check_cpu_dense_like(y, x, "y");
  check_cpu_dense_like(grad, x, "grad_x");
  CHECK_ARG(x.numel() > 0, "x must not be empty");
  float* out = scalar_output(loss);
  py::gil_scoped_release release;
  cpu::l1_loss_fwd(x.dtype, x.data, y.data, grad.data, x.numel(), out, num_threads > 0 ? num_threads : 1);
}

}  // namespace

void register_losses(py::module_& m) {
  using namespace py::literals;
  m.def("gan_loss_fwd", &gan_loss_fwd, "GAN loss mean and its gradient in one pass",
        "logits"_a, "grad_logits"_a, "loss"_a, "mode"_a, "target_is_real"_a, "num_threads"_a);
  m.def("l1_loss_fwd", &l1_loss_fwd, "mean |x - y| and its gradient in one pass",
        "x"_a, "y"_a, "grad_x"_a, "loss"_a, "num_threads"_a);
}

}  // namespace fastp2p
