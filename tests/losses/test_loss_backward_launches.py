"""The backward of gan_loss / l1_loss (fastp2p.ops.losses) runs only what it needs: no zero
fill for the never-used gradient output, no negated gradient for a target that needs none —
each a launch (and, for the L1 at batch 64, a pass over 50 MB) in the CUDA training step."""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastp2p.ops import gan_loss, l1_loss


class _OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _backward_ops(loss):
    with _OpNames() as ops:
        loss.backward()
    return ops.names


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
def test_gan_loss_backward_fills_no_zeros(backend, mode):
    logits = torch.randn(2, 1, 5, 5, requires_grad=True)
    ops = _backward_ops(gan_loss(logits, mode, True))
    assert ops["zeros"] == 0 and ops["zeros_like"] == 0 and ops["fill_"] == 0, ops
    # the gradient's values: tests/losses/test_losses.py


def test_l1_loss_backward_skips_what_is_not_needed(backend):
    fake_b = torch.randn(2, 3, 4, 4, requires_grad=True)
    real_b = torch.randn(2, 3, 4, 4)  # the training step's target: no gradient
    ops = _backward_ops(l1_loss(fake_b, real_b) * 100.0)
    assert ops["zeros"] == 0 and ops["neg"] == 0, ops
    fake_b.grad = None
    real_b.requires_grad_()
    l1_loss(fake_b, real_b).backward()
    assert torch.equal(real_b.grad, -fake_b.grad)  # still there when it is wanted
