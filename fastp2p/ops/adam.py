"""The Adam step of ``fastp2p.train.master_weights_adam.MasterWeightsAdam`` as an op.

Checks the flat buffers once, then runs the backend's ``adam_step`` launcher
(fastp2p.ops.backends): Triton's one-launch kernel (kernels/adam.py) on CUDA, or on CPU tensors
under TRITON_INTERPRET=1; elsewhere the reference's plain-PyTorch step (its ordinary path there,
contract.REFERENCE_ELSEWHERE). The buffers' layout and the step counter (``ticket``) are
described in kernels/adam.py and contract.Backend.adam_step.
"""
import torch

from fastp2p.ops.backends import backend_for

# The order of the float64 ``hyper`` tensor.
HYPER_FIELDS = ("beta1", "beta2", "eps", "weight_decay")


def adam_programs(numel: int, device: torch.device) -> int:
    """The ``num_programs`` to pass to every ``adam_step`` of one step counter over ``numel``
    elements on ``device`` (the launcher's grid; it divides the counter into steps)."""
    return backend_for(device, torch.float32).adam_programs(numel, device)


def adam_step(master, exp_avg, exp_avg_sq, grad_copied, grad_own, copy, lr, ticket, hyper,
              num_programs: int) -> None:
    """One torch.optim.Adam step over the flat buffers, in place, writing ``copy`` (bf16 or
    float32) from ``master[:copy.numel()]``; no sync.

    master / exp_avg / exp_avg_sq: float32 (numel,); grad_copied: (copy.numel(),) in copy's
    dtype; grad_own: float32 (numel - copy.numel(),); all contiguous. lr: float32 one-element
    tensor; ticket: int64 (1,); hyper: float64 (4,) of HYPER_FIELDS.

    >>> master, zeros = torch.ones(4), torch.zeros(4)
    >>> adam_step(master, zeros.clone(), zeros.clone(), torch.zeros(0), torch.ones(4),
    ...           torch.zeros(0), torch.tensor(0.1), torch.zeros(1, dtype=torch.int64),
    ...           torch.tensor([0.9, 0.999, 1e-8, 0.0], dtype=torch.float64),
    ...           adam_programs(4, master.device))   # master: 0.9 each
    """
    numel, num_copied = master.numel(), copy.numel()
    if copy.dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"the model's copy must be bfloat16 or float32, got {copy.dtype}")
    for name, t, dtype, size in (("exp_avg", exp_avg, torch.float32, numel),
                                 ("exp_avg_sq", exp_avg_sq, torch.float32, numel),
                                 ("grad_copied", grad_copied, copy.dtype, num_copied),
                                 ("grad_own", grad_own, torch.float32, numel - num_copied)):
        if t.dtype != dtype or t.numel() != size or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous {dtype} buffer of {size} elements, "
                             f"got {t.dtype} with {t.numel()}")
    backend_for(master.device, master.dtype, copy.dtype).adam_step(
        master, exp_avg, exp_avg_sq, grad_copied, grad_own, copy, lr, ticket, hyper,
        num_programs)
