// CPU kernels of fastp2p._C (OpenMP when the build found it).
#pragma once
#include <cstdint>

#include "../common/norm_act_params.h"

namespace fastp2p::cpu {

void norm_act_fwd(const NormActFwdArgs& args);
void norm_act_bwd(const NormActBwdArgs& args);

enum class GanLossMode : int { kVanilla = 0, kLsgan = 1, kWgangp = 2 };

// Dense tensors viewed as flat arrays of numel elements (the launcher guarantees matching layouts).
void gan_loss_fwd(DType dtype, const void* logits, void* grad_logits, int64_t numel,
                  GanLossMode mode, bool target_is_real, float* loss, int num_threads);
void l1_loss_fwd(DType dtype, const void* x, const void* y, void* grad_x, int64_t numel,
                 float* loss, int num_threads);

}  // namespace fastp2p::cpu
