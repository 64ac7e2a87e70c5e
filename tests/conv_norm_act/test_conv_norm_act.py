"""The fused conv's autograd (fastp2p.ops.conv_norm_act) in a chain, vs float64 PyTorch.

A down conv whose instance-norm statistics feed the next prologue, then the decoder's transposed
conv reading skip and up as two K-ranges (each its own norm + ReLU, dropout on up) with batch
statistics and running buffers: the output, the running update and the gradients of the input,
both weights and biases and both norms' gamma/beta, through the Triton interpreter.
"""
import pytest
import torch
import torch.nn.functional as F

from helpers.conv_fused_reference import prologue
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import InputTransform  # noqa: E402
from fastp2p.ops.conv_norm_act import conv_norm_act  # noqa: E402
from fastp2p.ops.norm_act import norm_act  # noqa: E402

# eps and momentum other than torch's defaults, so that the op hands on the ones it is given
# (test_conv_fused.py checks the kernels at both): eps 0.5 moves the first norm's rstd by 0.7 to
# 3% (its variances are 8 to 35); 1e-5 would move it by under 1e-6.
EPS, MOMENTUM, P, SEED, OFFSET = 0.5, 0.3, 0.5, 77, 2 ** 32 + 5


def _params(gen):
    def rand(*shape, spread=1.0, center=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float64) * spread + center
    return dict(
        x=rand(2, 3, 8, 8, spread=2, center=0.5), w1=rand(5, 3, 4, 4, spread=0.3), b1=rand(5),
        g1=rand(5, spread=0.3, center=1), be1=rand(5, spread=0.5),
        up=rand(2, 4, 4, 4, spread=2, center=-0.3), up_scale=rand(4, spread=0.3, center=1),
        up_shift=rand(4, spread=0.5), w2=rand(9, 6, 4, 4, spread=0.2), b2=rand(6),
        g2=rand(6, spread=0.3, center=1), be2=rand(6, spread=0.5), grad=rand(2, 6, 8, 8))


def _reference(p, running):
    """float64: conv -> InstanceNorm(affine) -> ReLU as skip, cat with ReLU(dropout(up
    affine)) -> ConvTranspose -> BatchNorm(affine, training), plus half the pre-norm output
    (so that the gradients of the transposed conv's bias and of its output do not cancel)."""
    y1 = F.conv2d(p["x"], p["w1"], p["b1"], stride=2, padding=1)
    skip = torch.relu(F.instance_norm(y1, weight=p["g1"], bias=p["be1"], eps=EPS))
    up = prologue(p["up"], InputTransform(p["up_scale"], p["up_shift"], "relu", P, SEED, OFFSET),
                  0.2)
    y2 = F.conv_transpose2d(torch.cat([skip, up], 1), p["w2"], p["b2"], stride=2, padding=1)
    return F.batch_norm(y2, *running, weight=p["g2"], bias=p["be2"], training=True,
                        momentum=MOMENTUM, eps=EPS) + 0.5 * y2


def _fused(p, running):
    y1, mean1, rstd1 = conv_norm_act([p["x"]], [InputTransform()], p["w1"], p["b1"], stride=2,
                                     padding=1, norm="instance", eps=EPS)
    scale1 = p["g1"] * rstd1
    shift1 = p["be1"] - mean1 * scale1
    transforms = [InputTransform(scale1, shift1, "relu"),
                  InputTransform(p["up_scale"], p["up_shift"], "relu", P, SEED, OFFSET)]
    y2, mean2, rstd2 = conv_norm_act([y1, p["up"]], transforms, p["w2"], p["b2"], stride=2,
                                     padding=1, transposed=True, norm="batch", eps=EPS,
                                     running_mean=running[0], running_var=running[1],
                                     momentum=MOMENTUM)
    scale2 = p["g2"] * rstd2
    shift2 = p["be2"] - mean2 * scale2
    return y2 * scale2[None, :, None, None] + shift2[None, :, None, None] + 0.5 * y2


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_chain_matches_float64_reference():
    params64 = _params(torch.Generator().manual_seed(5))
    running64 = [torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)]
    leaves64 = {k: v.clone().requires_grad_() for k, v in params64.items() if k != "grad"}
    expected = _reference(leaves64, running64)
    expected.backward(params64["grad"])

    leaves = {}
    for k, v in params64.items():
        if k == "grad":
            continue
        v = v.float()
        if v.dim() == 4 and k in ("x", "up"):
            v = v.contiguous(memory_format=torch.channels_last)
        leaves[k] = v.requires_grad_()
    running = [torch.zeros(6), torch.ones(6)]
    got = _fused(leaves, running)
    got.backward(params64["grad"].float())

    assert_close(got, expected, FP32_SINGLE_OP, "output")
    assert_close(running[0], running64[0], FP32_SINGLE_OP, "running_mean")
    assert_close(running[1], running64[1], FP32_SINGLE_OP, "running_var")
    for name, leaf in leaves.items():
        if name == "b1":  # a bias before an instance norm: its exact gradient is 0
            assert leaf.grad.abs().max() < FP32_SINGLE_OP * leaves["w1"].grad.norm()
        else:
            assert_close(leaf.grad, leaves64[name].grad, FP32_SINGLE_OP, f"grad {name}")


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
@pytest.mark.parametrize("p", [-0.5, -1e-9, 1.0, float("nan")],
                         ids=["negative", "just-below-0", "one", "nan"])
def test_dropout_p_outside_0_1_is_refused_as_norm_act_refuses_it(p):
    """With norm_act's message, before the running statistics are touched (a p below 0 was
    once taken as no dropout, silently)."""
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError) as norm_act_refusal:
        norm_act(x, norm="none", activation="relu", dropout_p=p, seed=1, offset=0)
    running = [torch.zeros(5), torch.ones(5)]
    with pytest.raises(ValueError) as refusal:
        conv_norm_act([x], [InputTransform(activation="relu", dropout_p=p, seed=1, offset=0)],
                      torch.randn(5, 3, 4, 4), stride=2, padding=1, norm="batch",
                      running_mean=running[0], running_var=running[1])
    assert str(refusal.value) == str(norm_act_refusal.value)
    assert torch.equal(running[0], torch.zeros(5)) and torch.equal(running[1], torch.ones(5))

def _two_source_grads(wanted):
    """The gradients of a decoder layer's two sources (skip, up; ReLU prologues, instance
    norm), each source requiring one only where ``wanted`` says so (None where it does not)."""
    gen = torch.Generator().manual_seed(5)
    cl = dict(memory_format=torch.channels_last)
    sources = [(torch.randn(2, c, 4, 4, generator=gen) + 0.3).contiguous(**cl).requires_grad_(w)
               for c, w in zip((3, 5), wanted)]
    weight = (torch.randn(8, 4, 4, 4, generator=gen) * 0.2).requires_grad_()
    y, _, _ = conv_norm_act(sources, [InputTransform(activation="relu")] * 2, weight,
                            stride=2, padding=1, transposed=True, norm="instance")
    y.backward(torch.randn(y.shape, generator=gen))
    return [x.grad for x in sources] + [weight.grad]


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
@pytest.mark.parametrize("wanted", [(False, True), (True, False)], ids=["up-only", "skip-only"])
def test_each_source_gets_its_gradient_by_its_own_need(wanted):
    """A source's data gradient is computed where that source needs one, whatever the other
    needs: reading the first source's need for every source left up's gradient None."""
    grads = _two_source_grads(wanted)
    every = _two_source_grads((True, True))
    for i, need in enumerate(wanted):
        assert (grads[i] is None) == (not need), f"source {i}"
        if need:
            assert torch.equal(grads[i], every[i]), f"source {i}"
    assert torch.equal(grads[2], every[2]), "weight"


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_backward_keeps_the_dropout_seed_the_forward_used():
    """A seed and offset given as tensors (as a CUDA graph's replay advances them in place) are
    copied at the forward: advancing them before the backward leaves the gradient the same."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 4, 4, 4, generator=gen) * 0.2
    grad_y = torch.randn(2, 6, 3, 3, generator=gen)

    def input_grad(advance):
        source = x.clone().requires_grad_()
        seed, offset = torch.tensor(7), torch.tensor(11)
        y, _, _ = conv_norm_act(
            [source], [InputTransform(activation="relu", dropout_p=0.5, seed=seed,
                                      offset=offset)], weight, stride=2, padding=1)
        if advance:
            seed.add_(1)
            offset.add_(100)
        y.backward(grad_y)
        return source.grad

    assert torch.equal(input_grad(advance=True), input_grad(advance=False))


@pytest.mark.cuda
def test_cuda_graph_replay_with_device_rng():
    """Forward + backward captured as one CUDA graph (device-scalar dropout seed and offset, no
    host sync): a replay after poisoning the outputs rewrites them with the eager values, and
    a new offset written into the device scalar changes the mask on the next replay."""
    cuda = torch.device("cuda")
    gen = torch.Generator(device=cuda).manual_seed(0)
    x = torch.randn(2, 8, 8, 8, device=cuda, generator=gen).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    weight = (torch.randn(8, 16, 4, 4, device=cuda, generator=gen) * 0.1).requires_grad_()
    scale = torch.rand(2, 8, device=cuda, generator=gen) + 0.5
    shift = torch.randn(2, 8, device=cuda, generator=gen)
    seed = torch.tensor(3, device=cuda)
    offset = torch.tensor(0, device=cuda)
    transform = InputTransform(scale, shift, "relu", 0.5, seed, offset)
    grad = torch.randn(2, 16, 16, 16, device=cuda, generator=gen)

    def step():
        x.grad = weight.grad = None
        y, mean, rstd = conv_norm_act([x], [transform], weight, None, stride=2, padding=1,
                                      transposed=True, norm="instance")
        torch.autograd.backward([y, rstd], [grad, torch.ones_like(rstd)])
        return y

    eager_y = step().detach().clone()
    eager_grads = (x.grad.clone(), weight.grad.clone())
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = step()
    for t in (static_y, x.grad, weight.grad):
        t.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_y, eager_y)
    assert torch.equal(x.grad, eager_grads[0]) and torch.equal(weight.grad, eager_grads[1])
    offset.fill_(12345)
    graph.replay()
    assert not torch.equal(static_y, eager_y)
