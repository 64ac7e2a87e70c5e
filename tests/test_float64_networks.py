"""float64 through the public modules and ops, with the backend the registry picks (nothing
forced): the networks (``.double()``), GANLoss and the loss ops run on the reference backend,
the only one that takes float64, and agree with the reference modules in float64.

The bound, FP64_SAME_MATH (1e-10 relative): both sides compute the same formulas in float64,
only in a different order (the fused ops' normalisation, gradient formulas and loss means vs
nn.BatchNorm2d / InstanceNorm2d / BCEWithLogitsLoss and autograd), so they differ by float64
rounding (~1e-16 per op, a few hundred ops deep, a few 1e-15 measured here). Anything computed
in float32 on the way (a fast backend, a float32 loss, a float32 statistic) is off by ~1e-7 or
more and fails: the bound tells float64 math from float32 math.

Float32 keeps its fast backend: the dtype moves only float64 (``test_float32_still_runs_on_the
_fast_backend``).
"""

import pytest
import torch

import fastp2p
from fastp2p import reference
from fastp2p.ops import backend_name_for, d_step_losses, g_step_losses, gan_loss, l1_loss
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.ops.backends import _resolve, norm_act_backend_for
from fastp2p.ops.norm_act import norm_act, norm_act_into
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.network_checks import (compare_networks, discriminator_pairs, random_images,
                                    unet_pair, with_same_masks)
from helpers.tolerances import FP64_SAME_MATH, assert_close
from helpers.triton_interpreter import KERNELS

needs_cpp = pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C was not built")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def registry_choice(monkeypatch):
    """The registry's own choice: no forced backend (the test helpers default it to reference
    when the Triton interpreter is set up) and no interpreter routing CPU ops to Triton."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _eval_after_a_train_step(ours, theirs64, x):
    """Running statistics away from their defaults, the same on both sides."""
    with torch.no_grad():
        ours.train()(x)
        theirs64.train()(x)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_double_unet_matches_the_reference_in_float64(norm, train):
    ours, theirs64 = unet_pair(norm, 5)
    ours.double()
    x = random_images(32).double()
    if not train:
        _eval_after_a_train_step(ours, theirs64, x)
    compare_networks(ours, theirs64, x, train, f"unet-{norm}-float64", FP64_SAME_MATH)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_double_unet_with_dropout_matches_the_reference_in_float64(norm):
    ours, theirs64 = unet_pair(norm, 6, use_dropout=True)
    ours.double().set_dropout_rng(5, 300)
    with_same_masks(theirs64, 5, 300)
    compare_networks(ours, theirs64, random_images(64).double(), True,
                     f"unet-dropout-{norm}-float64", FP64_SAME_MATH)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_double_unet_inference_matches_the_reference_in_float64(norm):
    """Eval without autograd (the inference path: folded weights, cached plans)."""
    ours, theirs64 = unet_pair(norm, 5)
    ours.double()
    x = random_images(32).double()
    _eval_after_a_train_step(ours, theirs64, x)
    with torch.no_grad():
        for _ in range(2):  # the second call runs from what the first cached
            assert_close(ours.eval()(x), theirs64.eval()(x), FP64_SAME_MATH, "unet inference")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_double_discriminators_match_the_reference_in_float64(norm, train):
    for name, ours, theirs64 in discriminator_pairs(norm):
        ours.double()
        x = torch.rand(2, 6, 32, 32, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64) * 2 - 1
        if not train:
            _eval_after_a_train_step(ours, theirs64, x)
        compare_networks(ours, theirs64, x, train, f"{name}-{norm}-float64", FP64_SAME_MATH)


def _logits(seed=4):
    return torch.randn(2, 1, 7, 7, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * 3


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("target_is_real", [True, False], ids=["real", "fake"])
@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
def test_ganloss_in_float64_matches_the_reference(mode, target_is_real, train):
    # .double() for both: with float32 labels the reference's vanilla loss is float32
    # (tests/test_gan_loss_result_dtype.py)
    ours = fastp2p.GANLoss(mode).double().train(train)
    theirs = reference.GANLoss(mode).double().train(train)
    x_ours, x_ref = _logits().requires_grad_(), _logits().requires_grad_()
    loss = ours(x_ours, target_is_real)
    expected = theirs(x_ref, target_is_real)
    assert loss.dtype == torch.float64
    loss.backward()
    expected.backward()
    assert_close(loss, expected, FP64_SAME_MATH, f"{mode} loss")
    assert_close(x_ours.grad, x_ref.grad, FP64_SAME_MATH, f"{mode} grad")


def test_l1_loss_in_float64_matches_the_reference():
    x, y = _logits(1).requires_grad_(), _logits(2).requires_grad_()
    x_ref, y_ref = (t.detach().clone().requires_grad_() for t in (x, y))
    loss = l1_loss(x, y)
    expected = (x_ref - y_ref).abs().mean()
    assert loss.dtype == torch.float64
    (loss * 3).backward()
    (expected * 3).backward()
    assert_close(loss, expected, FP64_SAME_MATH, "l1 loss")
    assert_close(x.grad, x_ref.grad, FP64_SAME_MATH, "l1 grad x")
    assert_close(y.grad, y_ref.grad, FP64_SAME_MATH, "l1 grad y")


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
def test_step_losses_in_float64_give_float64_gradients(mode):
    """The step losses are float32 (3,) by contract (the engine's tally); their gradients keep
    the inputs' float64."""
    theirs = reference.GANLoss(mode).double()
    fake, real, fake_b, real_b = (_logits(s).requires_grad_() for s in (5, 6, 7, 8))
    refs = [t.detach().clone().requires_grad_() for t in (fake, real, fake_b, real_b)]
    d_step_losses(fake, real, mode)[0].backward()
    (0.5 * (theirs(refs[0], False) + theirs(refs[1], True))).backward()
    g_step_losses(fake, fake_b, real_b, mode, 10.0)[0].backward()
    (theirs(refs[0], True) + 10.0 * (refs[2] - refs[3]).abs().mean()).backward()
    for name, ours, expected in zip(("fake", "real", "fake_b", "real_b"),
                                    (fake, real, fake_b, real_b), refs):
        assert ours.grad.dtype == torch.float64
        assert_close(ours.grad, expected.grad, FP64_SAME_MATH, f"{mode} grad {name}")


def test_norm_act_into_takes_float64():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = torch.full((2, 7, 5, 5), float("nan"), dtype=torch.float64)
    norm_act_into(x, None, None, None, None, out, 4, norm="instance", activation="relu")
    expected = norm_act_math(x, None, None, None, None, norm="instance", training=True,
                             momentum=0.1, eps=1e-5, activation="relu", slope=0.2,
                             dropout_p=0.0, seed=0, offset=0)
    assert_close(out[:, 4:], expected, FP64_SAME_MATH, "norm_act_into")
    assert torch.isnan(out[:, :4]).all()  # the channels outside the slice are untouched


@needs_cpp
def test_float32_still_runs_on_the_fast_backend(monkeypatch):
    """Only float64 moves to the reference backend: float32 (and the half types) keep the C++
    one on the CPU, and its launchers really run (norm_act_into: a float32 call recording
    autograd runs PyTorch's own norm ops instead, tests/norm_act/test_norm_act_torch_route.py)."""
    x32 = torch.randn(2, 3, 5, 5)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert backend_name_for(CPU, dtype) == "cpp"
        assert norm_act_backend_for(x32.to(dtype), "instance").NAME == "cpp"
    assert backend_name_for(CPU, torch.float64) == "reference"
    assert backend_name_for(CPU, torch.float32, torch.float64) == "reference"
    assert norm_act_backend_for(x32.double(), "batch").NAME == "reference"

    calls = []
    for launcher in ("norm_act_fwd", "gan_loss_fwd"):
        original = getattr(cpp_backend, launcher)
        monkeypatch.setattr(cpp_backend, launcher, lambda *a, _f=original, _n=launcher, **k: (
            calls.append(_n), _f(*a, **k))[1])
    for x in (x32, x32.double()):
        norm_act_into(x, None, None, None, None, torch.empty_like(x), 0, norm="instance")
        gan_loss(x, "vanilla", True)
    assert calls == ["norm_act_fwd", "gan_loss_fwd"]       # float32's; float64's ran elsewhere


@needs_cpp
def test_a_forced_backend_that_cannot_take_float64_says_so_on_every_call(monkeypatch):
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    for call in (lambda: norm_act(x), lambda: norm_act(x.requires_grad_()),
                 lambda: gan_loss(x, "lsgan", False), lambda: fastp2p.GANLoss("vanilla")(x, True),
                 lambda: l1_loss(x, x)):
        for _ in range(2):  # a refusal is not remembered as a choice
            with pytest.raises(ValueError, match=r"FASTP2P_BACKEND=cpp: an op on the cpp backend "
                                                 r"expects .* got torch.float64; unset "
                                                 r"FASTP2P_BACKEND"):
                call()
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    assert norm_act(x).dtype == torch.float64


def test_a_dtype_no_op_takes_is_named_by_the_op():
    """The op's own check speaks first, on the inference path as on the autograd one."""
    with pytest.raises(ValueError, match="norm_act expects x in"):
        norm_act(torch.ones(1, 2, 3, 3, dtype=torch.int64))


@pytest.mark.skipif(KERNELS is None, reason="needs triton (and no GPU) to load its backend here")
def test_on_cuda_float64_goes_to_the_reference_and_float32_stays_on_triton():
    """The registry's walk for a CUDA device, run on the CPU (no tensor is made)."""
    assert _resolve("cuda", "", (torch.float32,)) == "triton"
    assert _resolve("cuda", "", (torch.bfloat16, torch.float16)) == "triton"
    assert _resolve("cuda", "", (torch.float64,)) == "reference"
    with pytest.raises(ValueError, match="FASTP2P_BACKEND=triton: an op on the triton backend"):
        _resolve("cuda", "triton", (torch.float64,))
