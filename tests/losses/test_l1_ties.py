"""The L1 gradient where prediction == target is 0, as torch's F.l1_loss gives (sign(0) = 0).
Ties happen in pix2pix: a saturated tanh output of +-1 on a white or black target pixel. Through
l1_loss on every CPU backend and the generator's fused step loss (reference and Triton
interpreted; the C++ backend runs the reference's step losses), in float32 and bfloat16."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops import l1_loss
from fastp2p.ops.step_losses import g_step_losses, g_step_losses_and_grads
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import CPU_BACKEND_PARAMS

# The C++ backend has no step-loss launchers (it runs the reference's): not run twice.
STEP_BACKENDS = [p for p in CPU_BACKEND_PARAMS if getattr(p, "values", (p,))[0] != "cpp"]
SHAPE = (2, 3, 5, 7)


def tied_pair(dtype, seed=0):
    """(prediction in ``dtype``, target in float32, tie mask): random values in (-1, 1), and
    ties on about 3 elements in 5: prediction +1 on target +1, -1 on -1, and equal values."""
    gen = torch.Generator().manual_seed(seed)
    prediction = (torch.randn(SHAPE, generator=gen) * 2).tanh().to(dtype)
    target = torch.rand(SHAPE, generator=gen) * 2 - 1
    kind = torch.randint(0, 5, SHAPE, generator=gen)
    for value, which in ((1.0, 0), (-1.0, 1)):
        prediction[kind == which] = value
        target[kind == which] = value
    target[kind == 2] = prediction[kind == 2].float()
    ties = kind < 3
    assert torch.equal(prediction.float() == target, ties)
    return prediction, target, ties


def test_the_reference_gradient_is_zero_at_ties():
    """What the tests below compare with: torch's own float64 L1 backward."""
    prediction, target, ties = tied_pair(torch.float32)
    a, b = (t.double().requires_grad_() for t in (prediction, target))
    F.l1_loss(a, b).backward()
    assert (a.grad[ties] == 0).all() and (a.grad[~ties] != 0).all()


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_l1_loss_gradient_is_zero_at_ties(backend, layout):
    prediction, target, ties = tied_pair(torch.float32)
    if layout == "nhwc":
        prediction, target = (t.contiguous(memory_format=torch.channels_last)
                              for t in (prediction, target))
    ra, rb = (t.double().requires_grad_() for t in (prediction, target))
    (F.l1_loss(ra, rb) * 3).backward()
    a, b = (t.clone().requires_grad_() for t in (prediction, target))
    loss = l1_loss(a, b)
    (loss * 3).backward()
    assert_close(loss, F.l1_loss(ra, rb), FP32_SINGLE_OP, "loss")
    for got, expected, what in ((a.grad, ra.grad, "x"), (b.grad, rb.grad, "y")):
        assert (got[ties] == 0).all(), f"grad {what} is not 0 where x == y"
        assert_close(got, expected, FP32_SINGLE_OP, f"grad {what}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", STEP_BACKENDS, indirect=True)
def test_generator_step_loss_gradient_is_zero_at_ties(backend, dtype):
    fake_b, real_b, ties = tied_pair(dtype)
    logits = torch.randn(SHAPE[0], 1, 3, 4, generator=torch.Generator().manual_seed(1))
    lambda_l1 = 100.0
    ref_fake, ref_real = (t.double().requires_grad_() for t in (fake_b, real_b))
    (F.l1_loss(ref_fake, ref_real) * lambda_l1).backward()

    fake, real = fake_b.clone().requires_grad_(), real_b.clone().requires_grad_()
    losses = g_step_losses(logits.to(dtype), fake, real, "lsgan", lambda_l1)
    (losses[2] * 2.1).backward()
    _, _, grad_fake_b = g_step_losses_and_grads(logits.to(dtype), fake_b, real_b, "lsgan",
                                                lambda_l1)
    bound = FP32_SINGLE_OP if dtype == torch.float32 else 8e-3  # bf16: float32's rounded
    for got, expected, what in ((fake.grad, ref_fake.grad * 2.1, "fake_b"),
                                (real.grad, ref_real.grad * 2.1, "real_b"),
                                (grad_fake_b, ref_fake.grad, "fake_b (and_grads)")):
        assert (got[ties] == 0).all(), f"grad {what} is not 0 where fake_b == real_b"
        assert_close(got, expected, bound, f"grad {what}")
