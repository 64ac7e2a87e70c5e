"""The float64 check the l1_loss tests share."""
import torch.nn.functional as F

from fastp2p.ops import l1_loss
from helpers.tolerances import FP32_SINGLE_OP, assert_close


def assert_l1_loss_matches_float64(a, b, a64, b64):
    """l1_loss(a, b) and the gradients of 3 x it (not 1 x: a backward that ignored its incoming
    gradient would pass) against F.l1_loss of the float64 leaves ``a64``, ``b64``."""
    expected = F.l1_loss(a64, b64)
    (expected * 3).backward()
    loss = l1_loss(a, b)
    (loss * 3).backward()
    assert_close(loss, expected, FP32_SINGLE_OP, "loss")
    assert_close(a.grad, a64.grad, FP32_SINGLE_OP, "grad x")
    assert_close(b.grad, b64.grad, FP32_SINGLE_OP, "grad y")
