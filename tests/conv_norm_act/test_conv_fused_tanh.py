"""The fused convolution's output tanh (a network's output layer, e.g. the U-Net's ReLU ->
ConvTranspose2d -> Tanh) vs float64 tanh(conv(...)), through the Triton interpreter in float32
(DESIGN §5's single-op bound): the epilogue's tanh, and its backward folded into the loads of the
output gradient (GradFold(y, tanh=True): g * (1 - y^2)) by dgrad, wgrad and the bias gradient,
so no tanh backward runs; the autograd op against the unfused pair, saving no more than it.
Random data (pre-tanh spread ~1.5: some outputs saturated, most not), NaN-poisoned outputs;
and pre-tanh values of every magnitude from 1e-6 to 10, where a small output is small
everywhere."""
import pytest
import torch

from helpers.conv_fused_reference import conv_fused_reference
from helpers.network_checks import poison_allocations
from helpers.tolerances import BF16_VS_AUTOCAST, FP32_SINGLE_OP, assert_close, relative_error
from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import (GradFold, InputTransform,  # noqa: E402
                                        conv_fused_dgrad, conv_fused_fwd)
from fastp2p.kernels.conv_fused_wgrad import conv_fused_bias_grad, conv_fused_wgrad  # noqa: E402
from fastp2p.ops.conv_norm_act import conv_norm_act  # noqa: E402

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")

SLOPE = 0.2
# (name, channels per source, out channels, batch, height, width, transposed, stride, affine)
CASES = [
    # The U-Net's outermost decoder conv: skip and up, each normalised (per image) + ReLU.
    ("up-s2-skip3-up4-tanh", (3, 4), 3, 2, 3, 4, True, 2, "instance"),
    # A direct conv with a tanh output (the other direction's dgrad), per-channel scale/shift.
    ("down-s1-C5-tanh", (5,), 2, 1, 6, 5, False, 1, "batch"),
]


def _rand(gen, *shape, spread=1.0, center=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float64) * spread + center


def _make(case, seed=0):
    """float64 sources, their ReLU prologues with scale/shift, weight, bias, output gradient."""
    _, channels, c_out, batch, height, width, transposed, _, affine = case
    gen = torch.Generator().manual_seed(seed)
    sources = [_rand(gen, batch, c, height, width, spread=2, center=0.3) for c in channels]
    transforms = []
    for c in channels:
        shape = (batch, c) if affine == "instance" else (c,)
        transforms.append(InputTransform(_rand(gen, *shape, spread=0.3, center=1.0),
                                         _rand(gen, *shape, spread=0.5), "relu"))
    c_in = sum(channels)
    weight = _rand(gen, *((c_in, c_out, 4, 4) if transposed else (c_out, c_in, 4, 4)),
                   spread=0.25)
    return sources, transforms, weight, _rand(gen, c_out, spread=0.5), gen


def _float32(transform):
    return transform._replace(scale=transform.scale.float(), shift=transform.shift.float())


def _nhwc(x):
    return x.float().contiguous(memory_format=torch.channels_last)


def _poisoned(shape):
    return torch.full(shape, float("nan")).contiguous(memory_format=torch.channels_last)


def _reference(case, sources, transforms, weight, bias, gen):
    """tanh(conv(...)) in float64 and the gradients of every source, weight and bias."""
    _, _, _, _, _, _, transposed, stride, _ = case
    leaves = [s.clone().requires_grad_() for s in sources] + [
        weight.clone().requires_grad_(), bias.clone().requires_grad_()]
    pre = conv_fused_reference(leaves[:-2], transforms, leaves[-2], leaves[-1], stride=stride,
                               padding=1, transposed=transposed, slope=SLOPE)
    y = torch.tanh(pre)
    grad_y = _rand(gen, *y.shape)
    y.backward(grad_y)
    return y.detach(), grad_y, [leaf.grad for leaf in leaves]


@pytest.mark.interpreter
@needs_triton
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("wgrad_programs", [None, 64], ids=["one-split", "split"])
def test_tanh_epilogue_and_folded_backward_match_float64(case, wgrad_programs, monkeypatch):
    """Forward (poisoned out), dgrad of every source (poisoned), wgrad and the bias gradient,
    the last two also split over pixels (float32 partials summed) as on a GPU."""
    from fastp2p.kernels import conv_fused_wgrad as wgrad_module
    monkeypatch.setattr(wgrad_module, "WGRAD_PROGRAMS", wgrad_programs)
    _, _, _, _, _, _, transposed, stride, _ = case
    sources, transforms, weight, bias, gen = _make(case)
    y64, grad_y64, grads64 = _reference(case, sources, transforms, weight, bias, gen)
    geometry = dict(stride=stride, padding=1, transposed=transposed, slope=SLOPE)
    xs = [_nhwc(s) for s in sources]
    ts = [_float32(t) for t in transforms]
    w = weight.float()
    y, parts = conv_fused_fwd(xs, ts, w, bias.float(), partials=False, output_activation="tanh",
                              out=_poisoned(y64.shape), **geometry)
    assert parts is None
    assert_close(y, y64, FP32_SINGLE_OP, "forward")

    fold = GradFold(y, tanh=True)
    grad_y = _nhwc(grad_y64)
    offset, weight_grads = 0, []
    for i, (x, t) in enumerate(zip(xs, ts)):
        grad_x, _, _ = conv_fused_dgrad(grad_y, w, x, t, channel_offset=offset, fold=fold,
                                        out=_poisoned(x.shape), **geometry)
        assert_close(grad_x, grads64[i], FP32_SINGLE_OP, f"grad source {i}")
        weight_grads.append(conv_fused_wgrad(grad_y, x, t, kernel_size=(4, 4), fold=fold,
                                             **geometry))
        offset += x.shape[1]
    assert_close(torch.cat(weight_grads, 0 if transposed else 1), grads64[-2], FP32_SINGLE_OP,
                 "grad weight")
    assert_close(conv_fused_bias_grad(grad_y, fold), grads64[-1], FP32_SINGLE_OP, "grad bias")


@pytest.mark.interpreter
@needs_triton
@pytest.mark.parametrize("affine", [1, 2], ids=["per-image", "per-channel"])
@pytest.mark.parametrize("wgrad_programs", [None, 64], ids=["one-split", "split"])
def test_bias_grad_with_the_statistics_fold(affine, wgrad_programs, monkeypatch):
    """conv_fused_bias_grad loads through the same GradFold as dgrad / wgrad: the statistics'
    share g + alpha * y + beta too, and plain g without a fold; 288 rows, split in 3 (the last
    one short) as on a GPU."""
    from fastp2p.kernels import conv_fused_wgrad as wgrad_module
    monkeypatch.setattr(wgrad_module, "WGRAD_PROGRAMS", wgrad_programs)
    gen = torch.Generator().manual_seed(5)
    g64, y64 = _rand(gen, 2, 3, 12, 12), _rand(gen, 2, 3, 12, 12, spread=2, center=1)
    shape = (2, 3) if affine == 1 else (3,)
    alpha, beta = _rand(gen, *shape), _rand(gen, *shape)
    view = (lambda t: t[:, :, None, None]) if affine == 1 else (lambda t: t[None, :, None, None])
    fold = GradFold(_nhwc(y64), alpha.float(), beta.float())
    assert_close(conv_fused_bias_grad(_nhwc(g64), fold),
                 (g64 + view(alpha) * y64 + view(beta)).sum((0, 2, 3)), FP32_SINGLE_OP,
                 "folded")
    assert_close(conv_fused_bias_grad(g64.float()), g64.sum((0, 2, 3)), FP32_SINGLE_OP, "plain")


@pytest.mark.interpreter
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
def test_bias_grad_of_16_bit_storage(dtype):
    """The bias reduction has no tl.dot, so the interpreter is exact for 16-bit storage too:
    g and the tanh output y loaded in their dtype, summed in float32 (the sum of the stored
    values within the single-op bound)."""
    gen = torch.Generator().manual_seed(6)
    g = _nhwc(_rand(gen, 2, 3, 8, 4)).to(dtype)
    y = _nhwc(torch.tanh(_rand(gen, 2, 3, 8, 4, spread=1.5))).to(dtype)
    expected = (g.double() * (1 - y.double() ** 2)).sum((0, 2, 3))
    assert_close(conv_fused_bias_grad(g, GradFold(y, tanh=True)), expected, FP32_SINGLE_OP,
                 str(dtype))


def _saved_bytes(run):
    """Bytes autograd saves for the backward while ``run()`` builds the graph (each distinct
    tensor once); returns (run's result, bytes)."""
    saved = {}

    def pack(t):
        saved[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return out, sum(saved.values())


@pytest.mark.interpreter
@needs_triton
def test_op_matches_float64_and_saves_no_more_than_the_unfused_pair(monkeypatch):
    """conv_norm_act(output_activation="tanh") with autograd, NaN allocations: output and the
    gradients of both sources, their scale/shift, the weight and the bias; and the bytes it
    saves for the backward: the unfused pair's (op + torch.tanh) less one output."""
    case = CASES[0]
    sources, transforms, weight, bias, gen = _make(case, seed=1)
    y64, grad_y64, grads64 = _reference(case, sources, transforms, weight, bias, gen)
    affine64 = []
    for t in transforms:  # the reference's scale/shift gradients
        t64 = t._replace(scale=t.scale.clone().requires_grad_(),
                         shift=t.shift.clone().requires_grad_())
        affine64.append(t64)
    pre = conv_fused_reference(sources, affine64, weight, bias, stride=2, padding=1,
                               transposed=True, slope=SLOPE)
    torch.tanh(pre).backward(grad_y64)

    poison_allocations(monkeypatch)
    xs = [_nhwc(s).requires_grad_() for s in sources]
    ts = [t._replace(scale=t.scale.float().requires_grad_(),
                     shift=t.shift.float().requires_grad_()) for t in transforms]
    w, b = weight.float().requires_grad_(), bias.float().requires_grad_()
    geometry = dict(stride=2, padding=1, transposed=True, slope=SLOPE)
    (y, mean, rstd), fused_bytes = _saved_bytes(lambda: conv_norm_act(
        xs, ts, w, b, output_activation="tanh", **geometry))
    assert mean is None and rstd is None
    assert_close(y, y64, FP32_SINGLE_OP, "forward")
    y.backward(_nhwc(grad_y64))
    for i, x in enumerate(xs):
        assert_close(x.grad, grads64[i], FP32_SINGLE_OP, f"grad source {i}")
        assert_close(ts[i].scale.grad, affine64[i].scale.grad, FP32_SINGLE_OP, f"grad scale {i}")
        assert_close(ts[i].shift.grad, affine64[i].shift.grad, FP32_SINGLE_OP, f"grad shift {i}")
    assert_close(w.grad, grads64[-2], FP32_SINGLE_OP, "grad weight")
    assert_close(b.grad, grads64[-1], FP32_SINGLE_OP, "grad bias")

    _, pair_bytes = _saved_bytes(lambda: torch.tanh(conv_norm_act(xs, ts, w, b, **geometry)[0]))
    assert fused_bytes == pair_bytes - y.numel() * y.element_size()


@pytest.mark.interpreter
@needs_triton
def test_tanh_epilogue_is_accurate_at_every_magnitude(monkeypatch):
    """The epilogue's tanh of pre-tanh values spanning 1e-6 .. 10 in magnitude, both signs: a
    1x1 convolution by 1 (exact in float32) makes them the values given. Each decade, a
    tensor of its own (a near-grey image's output is small everywhere), within the single-op
    bound; tanh from exp(-2|z|) alone lost (1 - exp) to cancellation there (4.6e-4 at
    |z| ~ 3e-5). The backward folded from the stored y, with conv_norm_act's gradients of the
    input and the weight, stays within the bound too. NaN allocations."""
    poison_allocations(monkeypatch)
    magnitudes = 10.0 ** (torch.arange(128, dtype=torch.float64) * 7 / 128 - 6)
    z64 = (magnitudes * torch.tensor([1.0, -1.0]).repeat(8 * 8)).reshape(2, 1, 8, 8)
    x = _nhwc(z64).requires_grad_()
    w = torch.ones(1, 1, 1, 1, requires_grad=True)
    y, _, _ = conv_norm_act([x], [InputTransform()], w, stride=1, padding=0,
                            output_activation="tanh")
    z = x.detach().double()  # the float32 values the kernel was given
    expected = torch.tanh(z)
    for decade in range(-6, 1):
        at = (z.abs() >= 10.0 ** decade) & (z.abs() < 10.0 ** (decade + 1))
        assert at.sum() >= 16
        assert_close(y.detach()[at], expected[at], FP32_SINGLE_OP, f"|z| in 1e{decade}")
    gen = torch.Generator().manual_seed(7)
    grad_y = _rand(gen, *y.shape)
    y.backward(_nhwc(grad_y))
    grad_z = grad_y * (1 - expected ** 2)
    assert_close(x.grad, grad_z, FP32_SINGLE_OP, "grad input")
    assert_close(w.grad.reshape(()), (grad_z * z).sum(), FP32_SINGLE_OP, "grad weight")


def test_tanh_with_statistics_is_a_clear_error():
    """Checked before any launch: no interpreter needed."""
    x, w = torch.randn(1, 3, 4, 4), torch.randn(5, 3, 4, 4)
    with pytest.raises(ValueError, match="output_activation='tanh' needs norm='none'"):
        conv_norm_act([x], [InputTransform()], w, stride=2, padding=1, norm="instance",
                      output_activation="tanh")
    with pytest.raises(ValueError, match="takes partials=False"):
        conv_fused_fwd([x], [InputTransform()], w, stride=2, padding=1, partials=True,
                       output_activation="tanh")
    with pytest.raises(ValueError, match="output_activation must be one of"):
        conv_norm_act([x], [InputTransform()], w, stride=2, padding=1, output_activation="relu")
    with pytest.raises(ValueError, match="exactly one of them"):
        conv_fused_bias_grad(x, GradFold(x, torch.ones(3), torch.ones(3), tanh=True))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_data_reaches_the_curved_part_of_tanh(case):
    """(1 - y^2) is far from 1 on average but not 0: a kernel that dropped the tanh or its
    derivative would fail the checks above by far more than their bound."""
    sources, transforms, weight, bias, gen = _make(case)
    y64, _, _ = _reference(case, sources, transforms, weight, bias, gen)
    assert 0.2 < (1 - y64 ** 2).mean() < 0.8


@pytest.mark.cuda
def test_bf16_within_autocast_error():
    """bf16 storage, fp32 accumulation, on a GPU: forward and every gradient (sources, weight,
    bias) no worse than 1.5x (DESIGN §5) autocast's error of conv + torch.tanh, both against
    float64, plus 2e-4 for the summation order."""
    case = ("up-s2-skip64-up64-tanh", (64, 64), 3, 2, 32, 32, True, 2, "instance")
    sources, transforms, weight, bias, gen = _make(case)
    y64, grad_y64, grads64 = _reference(case, sources, transforms, weight, bias, gen)
    cuda = torch.device("cuda")
    ts = [t._replace(scale=t.scale.to(cuda).float(), shift=t.shift.to(cuda).float())
          for t in transforms]
    peer = [s.to(cuda).float().requires_grad_() for s in sources] + [
        weight.to(cuda).float().requires_grad_(), bias.to(cuda).float().requires_grad_()]
    with torch.autocast("cuda", torch.bfloat16):
        y_peer = torch.tanh(conv_fused_reference(peer[:2], ts, peer[2], peer[3], stride=2,
                                                 padding=1, transposed=True, slope=SLOPE))
    y_peer.backward(grad_y64.to(cuda, torch.bfloat16))

    leaves = [_nhwc(s).to(cuda, torch.bfloat16).requires_grad_() for s in sources] + [
        weight.to(cuda, torch.bfloat16).requires_grad_(),
        bias.to(cuda, torch.bfloat16).requires_grad_()]
    y, _, _ = conv_norm_act(leaves[:2], ts, leaves[2], leaves[3], stride=2, padding=1,
                            transposed=True, slope=SLOPE, output_activation="tanh")
    y.backward(_nhwc(grad_y64).to(cuda, torch.bfloat16))
    checks = [("forward", y, y_peer, y64)] + [
        (f"grad {i}", leaf.grad, p.grad, expected)
        for i, (leaf, p, expected) in enumerate(zip(leaves, peer, grads64))]
    for what, got, autocast, expected in checks:
        bound = BF16_VS_AUTOCAST * relative_error(autocast, expected) + 2e-4
        assert_close(got, expected, bound, f"{what} (autocast peer {bound:.2e})")
