// CUDA kernels of fastp2p._C (built when setup.py finds nvcc; see FASTP2P_CUDA).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/norm_act_params.h"

namespace fastp2p::cuda {

// float32 scratch the forward needs for its partial statistics (0 when no statistics).
int64_t norm_act_fwd_workspace_floats(const Shape4& shape, StatsMode stats);
// ... and the backward for its partial sums (reserved with or without affine: a few floats per channel).
int64_t norm_act_bwd_workspace_floats(const Shape4& shape, StatsMode stats);

// `stream` is the caller's cudaStream_t as an integer; `workspace` holds the floats above.
void norm_act_fwd(const NormActFwdArgs& args, std::uintptr_t stream, float* workspace);
void norm_act_bwd(const NormActBwdArgs& args, std::uintptr_t stream, float* workspace);

}  // namespace fastp2p::cuda
