// fastp2p._C: the C++ (and, when built with nvcc, CUDA) backend of fastp2p.ops.
// Built without torch headers: see fastp2p/ops/backends/cpp.py for the Python side.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastp2p {
void register_norm_act(py::module_& m);
void register_losses(py::module_& m);
void register_conv(py::module_& m);
}  // namespace fastp2p

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastp2p fused CPU (and CUDA) kernels; use them through fastp2p.ops";
#if defined(FASTP2P_WITH_CUDA)
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
#if defined(_OPENMP)
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  fastp2p::register_norm_act(m);
  fastp2p::register_losses(m);
  fastp2p::register_conv(m);
}
