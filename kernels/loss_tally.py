"""LossTally: the training engine's device-side loss bookkeeping, which the fused step-loss ops
update in place (triton-free, so the ops contract and the reference backend can name it).

The engine logs four losses a step and reads them only every N steps; keeping their running
sums and the first non-finite step in device tensors means a step never syncs with the host.
A fused step-loss op given a tally adds its two loss parts into ``loss_sums`` and records a
non-finite part, in the launch that finishes its losses, so no separate launches do it.
"""
from typing import NamedTuple

import torch


class LossTally(NamedTuple):
    loss_sums: torch.Tensor             # (K,) float32: running sum of each logged loss
    positions: tuple                    # (i, j): where the op's two loss parts are added
    device_step: torch.Tensor           # 0-dim int64: steps finished so far
    first_nonfinite_step: torch.Tensor  # 0-dim int64: 1-based first step with a NaN / Inf
    #                                     loss part, 0 while none was
    advance_step: bool                  # this op finishes the step: device_step += 1

    def check(self, device) -> None:
        """ValueError unless the tensors are what the ops write into, on ``device``."""
        sums, step, first = self.loss_sums, self.device_step, self.first_nonfinite_step
        if not (isinstance(sums, torch.Tensor) and sums.dtype == torch.float32
                and sums.dim() == 1 and sums.is_contiguous()):
            raise ValueError("LossTally.loss_sums must be a contiguous 1-d float32 tensor, got "
                             f"{getattr(sums, 'dtype', type(sums).__name__)} "
                             f"{tuple(getattr(sums, 'shape', ()))}")
        # Different positions: the finishing kernel reads and writes each sum once.
        if len(self.positions) != 2 or self.positions[0] == self.positions[1] or not all(
                isinstance(p, int) and 0 <= p < sums.numel() for p in self.positions):
            raise ValueError(f"LossTally.positions must be two different indices into "
                             f"loss_sums (0..{sums.numel() - 1}), got {self.positions!r}")
        for name, counter in (("device_step", step), ("first_nonfinite_step", first)):
            if not (isinstance(counter, torch.Tensor) and counter.dtype == torch.int64
                    and counter.dim() == 0):
                raise ValueError(f"LossTally.{name} must be a 0-dim int64 tensor, got "
                                 f"{getattr(counter, 'dtype', type(counter).__name__)}")
        if any(t.device != device for t in (sums, step, first)):
            raise ValueError(f"LossTally tensors must be on the losses' device {device}, got "
                             f"{sums.device} / {step.device} / {first.device}")
