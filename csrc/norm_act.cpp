// Binding of the fused norm-act launchers: boundary checks, then the CPU or CUDA kernel.
// Tensors arrive as (data_ptr, dtype code, sizes, strides, device) tuples; the Python launcher
// (fastp2p/ops/backends/cpp.py) allocates every output. NormActFwdPlan keeps the forward's
// checks for repeated calls, which then pass only addresses.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common/norm_act_params.h"
#include "cpu/kernels.h"
#if defined(FASTP2P_WITH_CUDA)
#include "cuda/kernels.h"
#endif

namespace py = pybind11;

namespace fastp2p {
namespace {

using OptTensor = std::optional<TensorTuple>;

DropoutParams make_dropout(double p, uint64_t seed, uint64_t offset, std::uintptr_t seed_ptr,
                           std::uintptr_t offset_ptr, bool on_cuda) {
  CHECK_ARG(p >= 0.0 && p < 1.0, "dropout_p must be in [0, 1), got ", p);
  CHECK_ARG((seed_ptr == 0) == (offset_ptr == 0), "seed and offset must both be device tensors or neither");
  CHECK_ARG(seed_ptr == 0 || on_cuda, "seed/offset tensors are read on the device: CUDA tensors only");
  DropoutParams d{};
  d.seed_ptr = reinterpret_cast<const int64_t*>(seed_ptr);
  d.offset_ptr = reinterpret_cast<const int64_t*>(offset_ptr);
  d.enabled = p > 0.0;
  d.start = mix32(uint32_t(seed & 0xFFFFFFFFu)) + uint32_t(offset & 0xFFFFFFFFu);
  d.threshold = uint32_t(p * 4294967296.0);  // floor(p * 2**32): exact scaling, p < 1
  d.scale = float(1.0 / (1.0 - p));
  return d;
}

Shape4 check_activation_tensor(const TensorArg& t, const char* name) {
  CHECK_DIM(t, 4, name);
  return {t.sizes[0], t.sizes[1], t.sizes[2], t.sizes[3]};
}

void check_like(const TensorArg& t, const TensorArg& x, const char* name) {
  CHECK_DIM(t, 4, name);
  for (int d = 0; d < 4; ++d) CHECK_SIZE(t, d, x.sizes[d], name);
  CHECK_DTYPE(t, x.dtype, name);
  CHECK_SAME_DEVICE(t, x, name);
}

const float* channel_vector(const std::optional<TensorArg>& t, const TensorArg& x, int64_t size,
                            const char* name) {
  if (!t) return nullptr;
  CHECK_CONTIGUOUS_1D(*t, size, name);
  CHECK_DTYPE(*t, DType::kFloat32, name);
  CHECK_SAME_DEVICE(*t, x, name);
  return static_cast<const float*>(t->data);
}

StatsMode check_stats(int code) {
  CHECK_ARG(code >= 0 && code <= 3, "stats mode must be 0..3 (instance, batch-train, "
            "batch-eval, none), got ", code);
  return static_cast<StatsMode>(code);
}

Activation check_activation(int code) {
  CHECK_ARG(code >= 0 && code <= 2, "activation must be 0..2 (none, relu, leaky_relu), got ", code);
  return static_cast<Activation>(code);
}

// As nn.InstanceNorm2d and nn.BatchNorm2d: statistics of a single value per group are rejected
// (no variance, and the running variance's count / (count - 1) would divide by zero).
void check_statistics_count(const Shape4& s, StatsMode stats) {
  CHECK_ARG(stats != StatsMode::kInstance || s.H * s.W > 1, "instance norm needs more than one spatial "
            "element per channel (as nn.InstanceNorm2d), got H x W = ", s.H, " x ", s.W);
  CHECK_ARG(stats != StatsMode::kBatchTrain || s.N * s.H * s.W > 1, "batch norm in training needs more "
            "than one value per channel (as nn.BatchNorm2d), got N x H x W = ", s.N, " x ", s.H, " x ", s.W);
}

int64_t group_count(const Shape4& s, StatsMode stats) {
  if (stats == StatsMode::kNone) return 0;
  return stats == StatsMode::kInstance ? s.N * s.C : s.C;
}

// The arguments after the statistics, the same in both directions: activation, dropout, and
// where the kernel runs.
template <typename Args>
void set_pointwise_args(Args& a, const TensorArg& x, int activation_code, double slope,
                        double dropout_p, uint64_t seed, uint64_t offset, std::uintptr_t seed_ptr,
                        std::uintptr_t offset_ptr, int num_threads) {
  a.activation = check_activation(activation_code);
  a.slope = float(slope);
  a.dropout = make_dropout(dropout_p, seed, offset, seed_ptr, offset_ptr, x.is_cuda());
  a.num_threads = num_threads > 0 ? num_threads : 1;
  a.device = x.device;
}

// Each direction's kernels, by argument type, so that one launch() serves both.
void cpu_kernel(const NormActFwdArgs& a) { cpu::norm_act_fwd(a); }
void cpu_kernel(const NormActBwdArgs& a) { cpu::norm_act_bwd(a); }
#if defined(FASTP2P_WITH_CUDA)
int64_t cuda_workspace_floats(const NormActFwdArgs& a) { return cuda::norm_act_fwd_workspace_floats(a.shape, a.stats); }
int64_t cuda_workspace_floats(const NormActBwdArgs& a) { return cuda::norm_act_bwd_workspace_floats(a.shape, a.stats); }
void cuda_kernel(const NormActFwdArgs& a, std::uintptr_t stream, float* ws) { cuda::norm_act_fwd(a, stream, ws); }
void cuda_kernel(const NormActBwdArgs& a, std::uintptr_t stream, float* ws) { cuda::norm_act_bwd(a, stream, ws); }

#endif

// Floats of CUDA workspace the launch of `a` needs (0 on the CPU).
template <typename Args>
int64_t workspace_needed(const Args& a, const TensorArg& x) {
#if defined(FASTP2P_WITH_CUDA)
  if (x.is_cuda()) return cuda_workspace_floats(a);
#endif
  (void)a, (void)x;
  return 0;
}

// Runs the kernel on x's device with the GIL released: the CPU one, or the CUDA one on the
// caller's stream with the caller's workspace (`workspace_floats` floats at `workspace`).
template <typename Args>
void launch(const Args& a, const TensorArg& x, std::uintptr_t stream, float* workspace,
            int64_t workspace_floats, int64_t needed) {
  if (!x.is_cuda()) {
    py::gil_scoped_release release;
    cpu_kernel(a);
    return;
  }
#if defined(FASTP2P_WITH_CUDA)
  CHECK_ARG(needed == 0 || (workspace != nullptr && workspace_floats >= needed),
            "the CUDA launcher needs a float32 workspace of ", needed, " elements, got ", workspace_floats);
  py::gil_scoped_release release;
  cuda_kernel(a, stream, needed == 0 ? nullptr : workspace);
#else
  (void)stream, (void)workspace, (void)workspace_floats, (void)needed;
  fail("fastp2p._C was built without CUDA: x must be a CPU tensor");
#endif
}

// The forward's checked geometry and settings: everything a call needs but the data pointers.
// Built once per (shapes, strides, dtype, device, settings) by the Python launcher and kept, so
// that a repeated call only passes addresses (benchmarks/NOTES.md, "Host cost per fused call");
// the tuple entry point norm_act_fwd below builds one per call. The tuples it is built from
// describe the tensors of every later call; their data pointers are not kept.
class NormActFwdPlan {
 public:
  NormActFwdPlan(const TensorTuple& x_t, const OptTensor& weight_t, const OptTensor& bias_t,
                 const OptTensor& running_mean_t, const OptTensor& running_var_t,
                 const TensorTuple& out_t, const OptTensor& mean_t, const OptTensor& rstd_t,
                 int stats_code, double momentum, double eps, int activation_code, double slope,
                 double dropout_p)
      : x_(x_t), dropout_p_(dropout_p) {
    const TensorArg out(out_t);
    NormActFwdArgs& a = args_;
    a.dtype = x_.dtype;
    a.shape = check_activation_tensor(x_, "x");
    check_like(out, x_, "out (the destination channel slice)");
    a.x_strides = strides4(x_);
    a.out_strides = strides4(out);
    a.stats = check_stats(stats_code);
    check_statistics_count(a.shape, a.stats);
    CHECK_ARG(weight_t.has_value() == bias_t.has_value(), "weight and bias must both be given or both be None");
    has_affine_ = channel_vector(optional_arg(weight_t), x_, a.shape.C, "weight") != nullptr;
    channel_vector(optional_arg(bias_t), x_, a.shape.C, "bias");
    CHECK_ARG(running_mean_t.has_value() == running_var_t.has_value(),
              "running_mean and running_var must both be given or both be None");
    CHECK_ARG(a.stats != StatsMode::kBatchEval || running_mean_t.has_value(),
              "batch norm in eval mode needs running_mean and running_var");
    has_running_ = channel_vector(optional_arg(running_mean_t), x_, a.shape.C, "running_mean") != nullptr;
    channel_vector(optional_arg(running_var_t), x_, a.shape.C, "running_var");
    const int64_t groups = group_count(a.shape, a.stats);
    CHECK_ARG(mean_t.has_value() == rstd_t.has_value(), "give both mean and rstd outputs or neither");
    // Without them the CPU kernels keep the statistics to themselves (an inference call that
    // discards them); the CUDA kernels pass them between launches, so they need them.
    CHECK_ARG(groups == 0 || mean_t.has_value() || !x_.is_cuda(),
              "mean and rstd outputs are needed when there is a norm on CUDA");
    groups_ = groups;
    has_statistics_ = groups > 0 && mean_t.has_value();
    if (has_statistics_) {
      channel_vector(optional_arg(mean_t), x_, groups, "mean");
      channel_vector(optional_arg(rstd_t), x_, groups, "rstd");
    }
    a.momentum = float(momentum);
    a.eps = float(eps);
    a.activation = check_activation(activation_code);
    a.slope = float(slope);
    a.device = x_.device;
    make_dropout(dropout_p_, 0, 0, 0, 0, x_.is_cuda());  // checks p once
    workspace_floats_ = workspace_needed(a, x_);
  }

  // Floats of CUDA workspace a call needs (0 on the CPU).
  int64_t workspace_floats() const { return workspace_floats_; }

  // One launch on tensors described by the plan: their addresses (0 for an absent optional
  // one, exactly where the plan was built without it; mean and rstd are ignored without a
  // norm), the dropout stream, and where to run.
  void run(std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias, std::uintptr_t running_mean,
           std::uintptr_t running_var, std::uintptr_t out, std::uintptr_t mean, std::uintptr_t rstd,
           uint64_t seed, uint64_t offset, std::uintptr_t seed_ptr, std::uintptr_t offset_ptr,
           int num_threads, std::uintptr_t stream, std::uintptr_t workspace,
           int64_t workspace_floats) const {
    CHECK_ARG(x != 0 && out != 0, "x and out must be given");
    CHECK_ARG((weight != 0) == has_affine_ && (bias != 0) == has_affine_,
              "weight and bias must be given exactly when the plan has them");
    CHECK_ARG((running_mean != 0) == has_running_ && (running_var != 0) == has_running_,
              "running_mean and running_var must be given exactly when the plan has them");
    if (groups_ == 0) mean = rstd = 0;
    CHECK_ARG((mean != 0) == has_statistics_ && (rstd != 0) == has_statistics_,
              "mean and rstd must be given exactly when the plan has them");
    NormActFwdArgs a = args_;
    a.x = reinterpret_cast<const void*>(x);
    a.out = reinterpret_cast<void*>(out);
    a.weight = reinterpret_cast<const float*>(weight);
    a.bias = reinterpret_cast<const float*>(bias);
    a.running_mean = reinterpret_cast<float*>(running_mean);
    a.running_var = reinterpret_cast<float*>(running_var);
    a.mean = reinterpret_cast<float*>(mean);
    a.rstd = reinterpret_cast<float*>(rstd);
    a.dropout = make_dropout(dropout_p_, seed, offset, seed_ptr, offset_ptr, x_.is_cuda());
    a.num_threads = num_threads > 0 ? num_threads : 1;
    launch(a, x_, stream, reinterpret_cast<float*>(workspace), workspace_floats, workspace_floats_);
  }

 private:
  NormActFwdArgs args_{};  // every field but the pointers, the dropout stream and num_threads
  TensorArg x_;            // x's description: dtype, sizes, strides, device
  double dropout_p_;
  int64_t groups_ = 0;  // statistics groups: (N * C), C, or 0 without a norm
  bool has_affine_ = false, has_running_ = false, has_statistics_ = false;
  int64_t workspace_floats_ = 0;
};

// A (pointer, floats) workspace from its tuple (CUDA only; (0, 0) when absent).
std::pair<std::uintptr_t, int64_t> workspace_of(const OptTensor& workspace_t, const TensorArg& x) {
  if (!workspace_t) return {0, 0};
  const TensorArg w(*workspace_t);
  CHECK_DTYPE(w, DType::kFloat32, "workspace");
  CHECK_SAME_DEVICE(w, x, "workspace");
  return {reinterpret_cast<std::uintptr_t>(w.data), w.numel()};
}

std::uintptr_t address(const OptTensor& t) { return t ? std::get<0>(*t) : 0; }

void norm_act_fwd(const TensorTuple& x_t, const OptTensor& weight_t, const OptTensor& bias_t,
                  const OptTensor& running_mean_t, const OptTensor& running_var_t,
                  const TensorTuple& out_t, const OptTensor& mean_t, const OptTensor& rstd_t,
                  int stats_code, double momentum, double eps, int activation_code, double slope,
                  double dropout_p, uint64_t seed, uint64_t offset, std::uintptr_t seed_ptr,
                  std::uintptr_t offset_ptr, int num_threads,
                  std::uintptr_t stream, const OptTensor& workspace_t) {
  const NormActFwdPlan plan(x_t, weight_t, bias_t, running_mean_t, running_var_t, out_t, mean_t,
                            rstd_t, stats_code, momentum, eps, activation_code, slope, dropout_p);
  const auto workspace = workspace_of(workspace_t, TensorArg(x_t));
  plan.run(std::get<0>(x_t), address(weight_t), address(bias_t), address(running_mean_t),
           address(running_var_t), std::get<0>(out_t), address(mean_t), address(rstd_t), seed,
           offset, seed_ptr, offset_ptr, num_threads, stream, workspace.first, workspace.second);
}

void norm_act_bwd(const TensorTuple& grad_out_t, const TensorTuple& x_t, const TensorTuple& grad_x_t,
                  const OptTensor& weight_t, const OptTensor& bias_t, const OptTensor& mean_t,
                  const OptTensor& rstd_t, const OptTensor& grad_weight_t,
                  const OptTensor& grad_bias_t, int stats_code, int activation_code, double slope,
                  double dropout_p, uint64_t seed, uint64_t offset, std::uintptr_t seed_ptr,
                  std::uintptr_t offset_ptr, int num_threads,
                  std::uintptr_t stream, const OptTensor& workspace_t) {
  const TensorArg grad_out(grad_out_t), x(x_t), grad_x(grad_x_t);
  NormActBwdArgs a{};
  a.dtype = x.dtype;
  a.shape = check_activation_tensor(x, "x");
  check_like(grad_out, x, "grad_out");
  check_like(grad_x, x, "grad_x");
  a.grad_out = grad_out.data;
  a.grad_out_strides = strides4(grad_out);
  a.x = x.data;
  a.x_strides = strides4(x);
  a.grad_x = grad_x.data;
  a.grad_x_strides = strides4(grad_x);
  a.stats = check_stats(stats_code);
  CHECK_ARG(weight_t.has_value() == bias_t.has_value(), "weight and bias must both be given or both be None");
  CHECK_ARG(weight_t.has_value() == grad_weight_t.has_value() && weight_t.has_value() == grad_bias_t.has_value(),
            "grad_weight and grad_bias outputs are needed exactly when there is a weight");
  a.weight = channel_vector(optional_arg(weight_t), x, a.shape.C, "weight");
  a.bias = channel_vector(optional_arg(bias_t), x, a.shape.C, "bias");
  a.grad_weight = const_cast<float*>(channel_vector(optional_arg(grad_weight_t), x, a.shape.C, "grad_weight"));
  a.grad_bias = const_cast<float*>(channel_vector(optional_arg(grad_bias_t), x, a.shape.C, "grad_bias"));
  const int64_t groups = group_count(a.shape, a.stats);
  if (groups > 0) {
    CHECK_ARG(mean_t && rstd_t, "the saved mean and rstd are needed when there is a norm");
    a.mean = channel_vector(optional_arg(mean_t), x, groups, "mean");
    a.rstd = channel_vector(optional_arg(rstd_t), x, groups, "rstd");
  }
  set_pointwise_args(a, x, activation_code, slope, dropout_p, seed, offset, seed_ptr, offset_ptr,
                     num_threads);
  const auto workspace = workspace_of(workspace_t, x);
  launch(a, x, stream, reinterpret_cast<float*>(workspace.first), workspace.second,
         workspace_needed(a, x));
}

}  // namespace

void register_norm_act(py::module_& m) {
  using namespace py::literals;
  m.def("norm_act_fwd", &norm_act_fwd, "Fused norm + activation + dropout into a channel slice",
        "x"_a, "weight"_a, "bias"_a, "running_mean"_a, "running_var"_a, "out"_a, "mean"_a,
        "rstd"_a, "stats"_a, "momentum"_a, "eps"_a, "activation"_a, "slope"_a, "dropout_p"_a,
        "seed"_a, "offset"_a, "seed_ptr"_a, "offset_ptr"_a, "num_threads"_a, "stream"_a, "workspace"_a);
  py::class_<NormActFwdPlan>(m, "NormActFwdPlan",
                             "norm_act_fwd's checks and geometry, kept for repeated calls")
      .def(py::init<const TensorTuple&, const OptTensor&, const OptTensor&, const OptTensor&,
                    const OptTensor&, const TensorTuple&, const OptTensor&, const OptTensor&, int,
                    double, double, int, double, double>(),
           "x"_a, "weight"_a, "bias"_a, "running_mean"_a, "running_var"_a, "out"_a, "mean"_a,
           "rstd"_a, "stats"_a, "momentum"_a, "eps"_a, "activation"_a, "slope"_a, "dropout_p"_a)
      .def_property_readonly("workspace_floats", &NormActFwdPlan::workspace_floats)
      .def("__call__", &NormActFwdPlan::run, "x"_a, "weight"_a, "bias"_a, "running_mean"_a,
           "running_var"_a, "out"_a, "mean"_a, "rstd"_a, "seed"_a, "offset"_a, "seed_ptr"_a,
           "offset_ptr"_a, "num_threads"_a, "stream"_a, "workspace"_a, "workspace_floats"_a);
  m.def("norm_act_bwd", &norm_act_bwd, "Backward of norm_act_fwd (recomputes the mask)",
        "grad_out"_a, "x"_a, "grad_x"_a, "weight"_a, "bias"_a, "mean"_a, "rstd"_a,
        "grad_weight"_a, "grad_bias"_a, "stats"_a, "activation"_a, "slope"_a, "dropout_p"_a,
        "seed"_a, "offset"_a, "seed_ptr"_a, "offset_ptr"_a, "num_threads"_a, "stream"_a, "workspace"_a);
#if defined(FASTP2P_WITH_CUDA)
  m.def("norm_act_fwd_workspace_floats", [](int64_t n, int64_t c, int64_t h, int64_t w, int stats) {
    return cuda::norm_act_fwd_workspace_floats({n, c, h, w}, check_stats(stats));
  });
  m.def("norm_act_bwd_workspace_floats", [](int64_t n, int64_t c, int64_t h, int64_t w, int stats) {
    return cuda::norm_act_bwd_workspace_floats({n, c, h, w}, check_stats(stats));
  });
#endif
}

}  // namespace fastp2p
