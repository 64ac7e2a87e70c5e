"""CPU float32 training with no backend forced runs PyTorch's own norm ops
(fastp2p.ops.norm_act_torch): the op's contract on every case of the kernel tests, against the
float64 oracle; the route taken exactly there; and a U-Net + PatchGAN training step on it equal
to the C++ kernels' within DESIGN's single-op bound."""
import importlib

import pytest
import torch

import fastp2p
from fastp2p.ops import norm_act_concat
from fastp2p.ops.backends import backend_named
from helpers.forced_backend import force_backend
from helpers.norm_act_cases import CASES, case_id, check_against_reference
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, relative_error

norm_act_op = importlib.import_module("fastp2p.ops.norm_act")  # the module, not the function
pytestmark = pytest.mark.skipif(backend_named("cpp") is None,
                                reason="the route replaces the C++ backend, not built here")


@pytest.fixture
def registry_choice(monkeypatch):
    """No backend forced, no interpreter: the registry picks the C++ backend on the CPU. The
    Function path raises, so a case that passes ran PyTorch's ops."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)

    def not_this_path(*args):
        raise AssertionError("the autograd Function ran instead of PyTorch's own ops")
    monkeypatch.setattr(norm_act_op._NormActFunction, "apply", not_this_path)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_case_matches_the_float64_oracle(case, registry_choice):
    check_against_reference(case, torch.float32, FP32_SINGLE_OP)


def test_output_layout_and_batch_count_follow_the_contract(registry_choice):
    x = torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
    skip = torch.randn(2, 2, 4, 4)                        # NCHW beside a channels-last x
    running_mean, running_var, count = torch.zeros(3), torch.ones(3), torch.tensor(5)
    y = norm_act_concat(skip, x, None, None, running_mean, running_var, norm="batch",
                        num_batches_tracked=count)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.shape == (2, 5, 4, 4)
    dropped = norm_act_op.norm_act(x, norm="instance", dropout_p=0.5, seed=3)  # an NCHW mask
    assert dropped.is_contiguous(memory_format=torch.channels_last)
    strided = torch.randn(2, 4, 4, 5).permute(0, 3, 1, 2)[:, 1:4].requires_grad_()
    assert norm_act_op.norm_act(strided, norm="instance").is_contiguous()
    assert count.item() == 6 and not torch.equal(running_mean, torch.zeros(3))
    plain = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = norm_act_op.norm_act(plain, norm="none", activation="none")
    assert out is not plain and torch.equal(out, plain)    # a new tensor, as the kernels give


@pytest.mark.parametrize("why", ["forced", "float64", "no autograd", "float64 affine"])
def test_the_kernels_run_elsewhere(monkeypatch, why):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if why == "forced":
        monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    else:
        monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setattr(norm_act_op, "norm_act_torch", lambda *args: pytest.fail("torch route"))
    dtype = torch.float64 if why == "float64" else torch.float32
    x = torch.randn(2, 3, 4, 4, dtype=dtype, requires_grad=why != "no autograd")
    # per-channel vectors of another dtype, which torch's CPU norms refuse and the kernels take
    affine = [torch.rand(3, dtype=torch.float64) + 0.5 for _ in range(2)] if "affine" in why \
        else [None, None]
    y = norm_act_op.norm_act(x, *affine, norm="instance", activation="relu")
    assert y.dtype == dtype


def test_a_blank_backend_variable_is_unset(registry_choice, monkeypatch):
    monkeypatch.setenv("FASTP2P_BACKEND", " ")
    torch_ops = []
    monkeypatch.setattr(norm_act_op, "norm_act_torch", lambda *args: torch_ops.append(1) or
                        args[0].clone())
    norm_act_op.norm_act(torch.randn(2, 3, 4, 4, requires_grad=True), norm="instance")
    assert torch_ops == [1]


def test_eval_folds_follow_the_statistics_this_route_updates(registry_choice):
    """BatchNorm recalibration: train-mode forwards with gradients (this route) between two
    eval calls; the folding cache (fastp2p.nn.folding) must see the new running statistics."""
    from fastp2p.nn.folding import folding_disabled
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(3, ndf=4, n_layers=2, norm="batch")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        net.eval()(x)                                   # folds the eval BatchNorms
    net.train()
    for _ in range(3):
        net(torch.randn(2, 3, 32, 32) * 3 + 1)
    with torch.no_grad():
        folded = net.eval()(x)
        with folding_disabled():
            unfolded = net(x)
    assert relative_error(folded, unfolded) <= FP32_SINGLE_OP


def _train_step(netG, netD, a, b):
    """Each network's gradients as one vector (the conv biases before a norm get rounding
    noise only: the norm cancels them, so they are compared as part of the whole)."""
    fake = netG(a)
    loss = (fake - b).abs().mean() + netD(torch.cat([a, fake], 1)).mean()
    loss.backward()
    return [torch.cat([p.grad.flatten() for p in net.parameters()]) for net in (netG, netD)]


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_a_network_step_equals_the_kernels_step(monkeypatch, norm):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(0)
    netG = fastp2p.UNet(3, 3, 6, ngf=4, norm=norm, use_dropout=True)   # 6: one Dropout level
    netD = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2, norm=norm)
    a, b = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    states = [{k: v.clone() for k, v in net.state_dict().items()} for net in (netG, netD)]
    dropout_rng = netG.dropout_rng.tolist()
    force_backend(monkeypatch, "cpp")
    kernels = _train_step(netG, netD, a, b)
    kernel_stats = {k: v.clone() for k, v in netG.state_dict().items()}
    for net, state in zip((netG, netD), states):
        net.zero_grad()
        net.load_state_dict(state)
    netG.set_dropout_rng(*dropout_rng)
    monkeypatch.delenv("FASTP2P_BACKEND")
    monkeypatch.setattr(norm_act_op._NormActFunction, "apply",
                        lambda *args: pytest.fail("the Function ran"))
    torch_ops = _train_step(netG, netD, a, b)
    for got, expected in zip(torch_ops, kernels):
        assert relative_error(got, expected) <= FP32_NETWORK
    for key, value in netG.state_dict().items():
        if value.is_floating_point():
            assert relative_error(value, kernel_stats[key]) <= FP32_SINGLE_OP, key
        else:
            assert torch.equal(value, kernel_stats[key]), key


def test_torch_route_computes_the_reference_math_and_returns_a_new_tensor(monkeypatch):
    """The norm -> activation -> dropout chain is written once (norm_act_math): the torch route
    adds only the batch count, the skip and the layout; with nothing to compute it still
    returns a new tensor."""
    torch_route = importlib.import_module("fastp2p.ops.norm_act_torch")
    calls, original = [], torch_route.norm_act_math

    def recorded(*args, **kwargs):
        calls.append(kwargs["norm"])
        return original(*args, **kwargs)
    monkeypatch.setattr(torch_route, "norm_act_math", recorded)
    x = torch.randn(2, 3, 4, 4)
    y = torch_route.norm_act_torch(x, None, None, None, None, None, None, 0, 0,
                                   norm_act_op.NormActConfig(norm="none"))
    assert calls == ["none"] and y is not x and torch.equal(y, x)
