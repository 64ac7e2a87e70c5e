"""The fused convolution kernels (kernels/conv_fused*.py) vs the float64 composed reference.

Each case runs the forward (poisoned output), the statistics finish (mean, rstd, the next
prologue's scale/shift, batch norm's running update), dgrad per source (poisoned, with the
gradients of the prologue's scale and shift) and wgrad per source, on random data, through the
Triton interpreter in float32 (DESIGN §5's single-op bound); in float16 through the interpreter
and in bf16 on a GPU, each against PyTorch's autocast error of the same composition.
"""
import dataclasses

import pytest
import torch

from helpers.conv_fused_reference import conv_fused_reference, statistics_reference
from helpers.tolerances import BF16_VS_AUTOCAST, FP32_SINGLE_OP, assert_close, relative_error
from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import (InputTransform, conv_fused_dgrad,  # noqa: E402
                                        conv_fused_fwd)
from fastp2p.kernels.conv_fused_wgrad import conv_fused_wgrad  # noqa: E402
from fastp2p.kernels.conv_stats_finish import conv_stats_finish  # noqa: E402

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")

EPS, MOMENTUM, SLOPE = 1e-5, 0.1, 0.2


@dataclasses.dataclass(frozen=True)
class Source:
    channels: int
    affine: str = "none"        # none | instance (per image and channel) | batch (per channel)
    activation: str = "none"
    dropout_p: float = 0.0


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    sources: tuple
    out_channels: int
    batch: int
    height: int
    width: int
    transposed: bool = False
    stride: int = 2
    padding: int = 1
    norm: str = "none"          # the statistics the epilogue feeds: none | instance | batch
    bias: bool = True
    layout: str = "nhwc"        # nhwc | nchw | slice (a channel slice of a wider NHWC buffer,
                                # and a channels-last weight)
    slope: float = SLOPE        # the LeakyReLU prologues' negative slope
    eps: float = EPS            # the statistics finish's eps and batch norm's momentum
    momentum: float = MOMENTUM


CASES = [
    # U-Net outermost down conv (raw image in, no prologue) feeding an instance norm.
    Case("down-s2-C3-plain", (Source(3),), 8, 2, 8, 8, norm="instance"),
    # U-Net / PatchGAN down conv after an instance norm + LeakyReLU, batch-norm stats out;
    # eps and momentum other than torch's defaults (a kernel that used those would pass the
    # other cases: against these outputs' variances of 2 to 8, eps 1e-5 moves rstd by at most
    # 3e-6 relative, eps 0.5 by 3 to 11%).
    Case("down-s2-C5-instance-lrelu-eps0.5-momentum0.3", (Source(5, "instance", "leaky_relu"),),
         6, 2, 6, 8, norm="batch", bias=False, layout="slice", eps=0.5, momentum=0.3),
    # PatchGAN tail: 4x4 stride 1 after batch norm + LeakyReLU, to one channel; odd map,
    # two row tiles per image.
    Case("tail-s1-C7-batch-lrelu", (Source(7, "batch", "leaky_relu"),), 1, 1, 10, 10, stride=1,
         layout="nchw"),
    # Decoder: skip and up as two K-ranges, each with its own norm + ReLU, dropout on up.
    Case("up-s2-skip3-up5-instance-dropout-eps0.5",
         (Source(3, "instance", "relu"), Source(5, "instance", "relu", 0.5)), 4, 2, 6, 6,
         transposed=True, norm="instance", eps=0.5),
    Case("up-s2-skip4-up6-batch-dropout",
         (Source(4, "batch", "relu"), Source(6, "batch", "relu", 0.5)), 5, 1, 3, 4,
         transposed=True, norm="batch", bias=False, layout="slice"),
    # Transposed, one source, no activation (exercises the identity prologue backward).
    Case("up-s2-C6-batch-none", (Source(6, "batch"),), 3, 2, 2, 3, transposed=True,
         layout="nchw"),
    # Slopes other than the default (a kernel that used 0.2 would pass the cases above), one
    # negative, as LeakyReLU allows; and dropout with p != 0.5, where 1/p != 1/(1 - p).
    Case("down-s2-C3-instance-lrelu-slope0.05", (Source(3, "instance", "leaky_relu"),), 4, 2,
         4, 6, norm="instance", slope=0.05),
    Case("tail-s1-C3-batch-lrelu-slope-0.3", (Source(3, "batch", "leaky_relu"),), 2, 1, 5, 5,
         stride=1, norm="batch", layout="nchw", slope=-0.3),
    Case("up-s2-skip3-up4-dropout0.3",
         (Source(3, "instance", "relu"), Source(4, "instance", "leaky_relu", 0.3)), 3, 2, 3, 3,
         transposed=True, norm="instance", slope=0.05),
    # A PatchGAN layer on an odd map (--preprocess none keeps the images' sizes): the last
    # input row and column reach no output, so the data gradient's tiles are not whole and
    # its stores must be masked (every case above tiles exactly).
    Case("down-s2-C4-batch-lrelu-odd-7x9", (Source(4, "batch", "leaky_relu"),), 5, 2, 7, 9,
         norm="batch"),
]


def _layout(x, layout):
    if layout == "nchw":
        return x.contiguous()
    if layout == "slice":  # a channel slice of a wider channels-last buffer: gaps in memory
        wide = torch.zeros(x.shape[0], x.shape[1] + 3, *x.shape[2:], dtype=x.dtype)
        wide = wide.contiguous(memory_format=torch.channels_last)
        wide[:, 2:2 + x.shape[1]] = x
        return wide[:, 2:2 + x.shape[1]]
    return x.contiguous(memory_format=torch.channels_last)


def _poisoned(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype).contiguous(
        memory_format=torch.channels_last)


def _make(case, seed=0):
    """float64 data: sources (pre-norm, not centred), per-source scale/shift, weight, bias,
    the output gradient, and the stats' affine and running buffers."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, spread=1.0, center=0.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * spread + center)

    sources, transforms = [], []
    for i, s in enumerate(case.sources):
        sources.append(rand(case.batch, s.channels, case.height, case.width, spread=2,
                            center=0.3))
        coeff_shape = {"instance": (case.batch, s.channels), "batch": (s.channels,)}.get(s.affine)
        scale = None if coeff_shape is None else rand(*coeff_shape, spread=0.3, center=1.0)
        shift = None if coeff_shape is None else rand(*coeff_shape, spread=0.5)
        transforms.append(InputTransform(
            scale, shift, s.activation, s.dropout_p, 1234 + i, 2 ** 33 - 7 * i))
    c_in = sum(s.channels for s in case.sources)
    weight_shape = ((c_in, case.out_channels, 4, 4) if case.transposed
                    else (case.out_channels, c_in, 4, 4))
    weight = rand(*weight_shape, spread=0.2)
    bias = rand(case.out_channels) if case.bias else None
    norm_affine = (rand(case.out_channels, spread=0.3, center=1.0), rand(case.out_channels))
    running = (rand(case.out_channels, spread=0.3), rand(case.out_channels, spread=0.1,
                                                          center=1.0).abs())
    return sources, transforms, weight, bias, norm_affine, running, gen


def _as(transform, dtype, requires_grad=False):
    """The transform with its scale/shift converted (and made leaves when requires_grad)."""
    def convert(t):
        if t is None:
            return None
        t = t.detach().to(dtype)
        return t.requires_grad_() if requires_grad else t
    return transform._replace(scale=convert(transform.scale), shift=convert(transform.shift))


def _reference(case, sources, transforms, weight, bias, grad_seed_gen):
    xs = [s.clone().requires_grad_() for s in sources]
    ts = [_as(t, torch.float64, requires_grad=True) for t in transforms]
    w = weight.clone().requires_grad_()
    b = None if bias is None else bias.clone().requires_grad_()
    y = conv_fused_reference(xs, ts, w, b, stride=case.stride, padding=case.padding,
                             transposed=case.transposed, slope=case.slope)
    grad_y = torch.randn(y.shape, generator=grad_seed_gen, dtype=torch.float64)
    y.backward(grad_y)
    return y.detach(), grad_y, xs, ts, w, b


def _check_case(case):
    sources, transforms, weight, bias, norm_affine, running, gen = _make(case)
    y64, grad_y64, xs, ts, w64, b64 = _reference(case, sources, transforms, weight, bias, gen)
    geometry = dict(stride=case.stride, padding=case.padding, transposed=case.transposed,
                    slope=case.slope)

    xs32 = [_layout(s.float(), case.layout) for s in sources]
    ts32 = [_as(t, torch.float32) for t in transforms]
    # Weights as the engine keeps them in the strided cases: channels-last.
    w32 = _layout(weight.float(), "nhwc" if case.layout == "slice" else "nchw")
    y, parts = conv_fused_fwd(xs32, ts32, w32, None if bias is None else bias.float(),
                              partials=case.norm != "none",
                              out=_poisoned(y64.shape, torch.float32), **geometry)
    assert_close(y, y64, FP32_SINGLE_OP, "forward")

    if case.norm != "none":
        per_sample = case.norm == "instance"
        run_mean, run_var = (r.float().clone() for r in running)
        gamma, beta = (t.float() for t in norm_affine)
        mean, rstd, scale, shift = conv_stats_finish(
            parts, per_sample=per_sample, eps=case.eps, gamma=gamma, beta=beta,
            running_mean=None if per_sample else run_mean,
            running_var=None if per_sample else run_var, momentum=case.momentum)
        mean64, var64 = statistics_reference(y64, per_sample)
        rstd64 = (var64 + case.eps).rsqrt()
        assert_close(mean, mean64, FP32_SINGLE_OP, "mean")
        assert_close(rstd, rstd64, FP32_SINGLE_OP, "rstd")
        assert_close(scale, norm_affine[0] * rstd64, FP32_SINGLE_OP, "next scale")
        assert_close(shift, norm_affine[1] - mean64 * norm_affine[0] * rstd64, FP32_SINGLE_OP,
                     "next shift")
        if not per_sample:
            count = y64.numel() / y64.shape[1]
            momentum = case.momentum
            assert_close(run_mean, (1 - momentum) * running[0] + momentum * mean64,
                         FP32_SINGLE_OP, "running_mean")
            assert_close(run_var, (1 - momentum) * running[1]
                         + momentum * var64 * count / (count - 1), FP32_SINGLE_OP, "running_var")

    grad_y = _layout(grad_y64.float(), case.layout)
    offset, weight_grads = 0, []
    for i, (x, t, x64, t64) in enumerate(zip(xs32, ts32, xs, ts)):
        grad_x, grad_scale, grad_shift = conv_fused_dgrad(
            grad_y, w32, x, t, channel_offset=offset,
            out=_poisoned(x.shape, torch.float32), **geometry)
        assert_close(grad_x, x64.grad, FP32_SINGLE_OP, f"grad source {i}")
        if t.scale is not None:
            assert_close(grad_scale, t64.scale.grad, FP32_SINGLE_OP, f"grad scale {i}")
            assert_close(grad_shift, t64.shift.grad, FP32_SINGLE_OP, f"grad shift {i}")
        weight_grads.append(conv_fused_wgrad(grad_y, x, t, kernel_size=(4, 4), **geometry))
        offset += x.shape[1]
    grad_weight = torch.cat(weight_grads, 0 if case.transposed else 1)
    assert_close(grad_weight, w64.grad, FP32_SINGLE_OP, "grad weight")


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fused_conv_matches_float64_reference(case):
    """Forward, statistics, and the gradients of every source, scale, shift and the weight."""
    _check_case(case)


@needs_triton
@pytest.mark.interpreter
def test_wgrad_split_over_pixels(monkeypatch):
    """Several programs per weight tile (as on a GPU): float32 partials summed per split."""
    from fastp2p.kernels import conv_fused_wgrad as wgrad_module
    monkeypatch.setattr(wgrad_module, "WGRAD_PROGRAMS", 64)
    _check_case(Case("tail-s1-split", (Source(3, "instance", "leaky_relu"),), 2, 2, 9, 9,
                     stride=1))


@needs_triton
@pytest.mark.interpreter
def test_statistics_stable_far_from_zero():
    """Output mean 500, spread ~1: Chan's merge of two-pass tile moments keeps rstd to 1e-5,
    where float32 sum(x^2) - sum(x)^2 / n would lose about 2 digits."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 24, 24, generator=gen, dtype=torch.float64)
    weight = torch.randn(5, 4, 4, 4, generator=gen, dtype=torch.float64) * 0.05
    bias = 500 + torch.randn(5, generator=gen, dtype=torch.float64)
    y64 = torch.nn.functional.conv2d(x, weight, bias, stride=2, padding=1)
    y, parts = conv_fused_fwd((_layout(x.float(), "nhwc"),), (InputTransform(),), weight.float(),
                              bias.float(), stride=2, padding=1)
    assert parts.a.shape[1] > 1  # several tiles per image are merged
    assert_close(y, y64, FP32_SINGLE_OP, "y")
    for per_sample in (True, False):
        mean, rstd, _, _ = conv_stats_finish(parts, per_sample=per_sample, eps=EPS)
        mean64, var64 = statistics_reference(y.double(), per_sample)
        assert_close(mean, mean64, FP32_SINGLE_OP, "mean")
        assert_close(rstd, (var64 + EPS).rsqrt(), FP32_SINGLE_OP, "rstd")


GPU_CASES = [
    # The LeakyReLU prologue at slope 0.05 and the statistics at eps 10, which a kernel that used
    # torch's 0.2 or 1e-5 cannot match (the other two cases could not tell): against this
    # output's variances of 53 to 95, eps 10 moves rstd by 5 to 8%, eps 0.5 would by under 0.5%.
    # (No running buffers in this check: the finish's momentum is the interpreter tests'.)
    Case("down-s2-C64-instance-lrelu-slope0.05-eps10", (Source(64, "instance", "leaky_relu"),),
         128, 4, 32, 32, norm="instance", slope=0.05, eps=10.0),
    Case("tail-s1-C256-batch-lrelu", (Source(256, "batch", "leaky_relu"),), 1, 2, 18, 18,
         stride=1),
    Case("up-s2-skip64-up64-dropout",
         (Source(64, "instance", "relu"), Source(64, "instance", "relu", 0.5)), 32, 4, 16, 16,
         transposed=True, norm="instance"),
]


def _check_against_autocast(case, device, dtype):
    """Sources, weight and output gradient stored in ``dtype``, accumulation in float32:
    forward, statistics, every source's, scale's, shift's and the weight's gradient no worse
    than 1.5x (DESIGN §5) PyTorch's autocast error of the unfused composition in ``dtype``
    (the activated input is rounded to ``dtype`` before its conv there too), both measured
    against float64, plus 1/16 of the dtype's epsilon: a short vector's error (a scale's
    gradient over 3 channels) moves by that much with the order of its float32 sums (fp16:
    measured up to 1.66x autocast's alone)."""
    sources, transforms, weight, bias, _, _, gen = _make(case)
    y64, grad_y64, xs, ts, w64, _ = _reference(case, sources, transforms, weight, bias, gen)
    geometry = dict(stride=case.stride, padding=case.padding, transposed=case.transposed,
                    slope=case.slope)
    bias32 = None if bias is None else bias.to(device).float()

    def coefficients(requires_grad):
        return [t._replace(
            scale=None if t.scale is None else t.scale.to(device).float().requires_grad_(
                requires_grad),
            shift=None if t.shift is None else t.shift.to(device).float().requires_grad_(
                requires_grad)) for t in transforms]

    # The peer: the same composition under autocast (norm/activation in fp32, conv in dtype).
    xs_auto = [s.to(device, dtype).float().requires_grad_() for s in sources]
    ts_auto = coefficients(True)
    w_auto = weight.to(device).float().requires_grad_()
    with torch.autocast(device.type, dtype):
        y_auto = conv_fused_reference(xs_auto, ts_auto, w_auto, bias32, **geometry)
    y_auto.backward(grad_y64.to(device, dtype))

    xs16 = [_layout(s.to(dtype), case.layout).to(device) for s in sources]
    ts16 = coefficients(False)
    w16 = weight.to(device, dtype)
    y, parts = conv_fused_fwd(xs16, ts16, w16, bias32, partials=case.norm != "none",
                              out=_poisoned(y64.shape, dtype).to(device), **geometry)
    assert y.dtype == dtype
    grad_y = _layout(grad_y64.to(dtype), "nhwc").to(device)
    checks = [("forward", y, y_auto, y64)]
    summation_order = torch.finfo(dtype).eps / 16
    if case.norm != "none":
        per_sample = case.norm == "instance"
        mean, rstd, _, _ = conv_stats_finish(parts, per_sample=per_sample, eps=case.eps)
        auto_mean, auto_var = statistics_reference(y_auto.float(), per_sample)
        mean64, var64 = statistics_reference(y64, per_sample)
        checks += [("mean", mean, auto_mean, mean64),
                   ("rstd", rstd, (auto_var + case.eps).rsqrt(), (var64 + case.eps).rsqrt())]
    offset, weight_grads = 0, []
    for i, (x, t) in enumerate(zip(xs16, ts16)):
        grad_x, grad_scale, grad_shift = conv_fused_dgrad(
            grad_y, w16, x, t, channel_offset=offset,
            out=_poisoned(x.shape, dtype).to(device), **geometry)
        checks.append((f"grad source {i}", grad_x, xs_auto[i].grad, xs[i].grad))
        if t.scale is not None:
            checks += [(f"grad scale {i}", grad_scale, ts_auto[i].scale.grad, ts[i].scale.grad),
                       (f"grad shift {i}", grad_shift, ts_auto[i].shift.grad, ts[i].shift.grad)]
        weight_grads.append(conv_fused_wgrad(grad_y, x, t, kernel_size=(4, 4), **geometry))
        offset += x.shape[1]
    checks.append(("grad weight", torch.cat(weight_grads, 0 if case.transposed else 1),
                   w_auto.grad, w64.grad))
    for what, got, autocast, expected in checks:
        bound = BF16_VS_AUTOCAST * relative_error(autocast, expected) + summation_order
        assert_close(got, expected, bound, f"{what} (autocast peer {bound:.2e})")


@pytest.mark.cuda
@pytest.mark.parametrize("case", GPU_CASES, ids=[c.name for c in GPU_CASES])
def test_bf16_within_autocast_error(case):
    _check_against_autocast(case, torch.device("cuda"), torch.bfloat16)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fp16_within_autocast_error(case):
    """The same in float16 through the interpreter, against CPU autocast (bf16's tl.dot is
    garbage in the interpreter: its path is the GPU test above)."""
    _check_against_autocast(case, torch.device("cpu"), torch.float16)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("per_sample", [True, False], ids=["instance", "batch"])
def test_statistics_finish_merges_many_tiles(per_sample):
    """More tiles than one block of the finishing kernel, some of them empty (a tile past the
    end of a phase): the merged mean and rstd of all rows, far from zero."""
    from fastp2p.kernels.conv_fused import TilePartials
    gen = torch.Generator().manual_seed(11)
    N, T, C = 2, 150, 3
    counts = torch.randint(0, 6, (N, T), generator=gen)
    rows = [[torch.randn(int(k), C, generator=gen, dtype=torch.float64) * 2 + 300
             for k in counts[n]] for n in range(N)]
    mean = torch.stack([torch.stack([r.mean(0) if len(r) else torch.zeros(C, dtype=r.dtype)
                                     for r in image]) for image in rows])
    m2 = torch.stack([torch.stack([((r - r.mean(0)) ** 2).sum(0) if len(r)
                                   else torch.zeros(C, dtype=r.dtype) for r in image])
                      for image in rows])
    parts = TilePartials(mean.float(), m2.float(), counts.float())
    got_mean, got_rstd, _, _ = conv_stats_finish(parts, per_sample=per_sample, eps=EPS)
    data = [torch.cat(image) for image in rows]
    if not per_sample:
        data = [torch.cat(data)]
    expected_mean = torch.stack([d.mean(0) for d in data])
    expected_rstd = torch.stack([(d.var(0, unbiased=False) + EPS).rsqrt() for d in data])
    if not per_sample:
        expected_mean, expected_rstd = expected_mean[0], expected_rstd[0]
    assert_close(got_mean, expected_mean, FP32_SINGLE_OP, "mean")
    assert_close(got_rstd, expected_rstd, FP32_SINGLE_OP, "rstd")


@pytest.mark.parametrize("bad, message", [
    (dict(scale=torch.ones(3)), "both scale and shift"),
    (dict(scale=torch.ones(2, 4), shift=torch.ones(2, 4)), "shape (2, 3) or (3,)"),
    (dict(scale=torch.ones(3, dtype=torch.float64), shift=torch.ones(3, dtype=torch.float64)),
     "float32"),
    (dict(activation="tanh"), "activation must be one of"),
    (dict(dropout_p=-0.5), "dropout p must be in"),
], ids=["scale-without-shift", "wrong-shape", "wrong-dtype", "unknown-activation",
        "negative-dropout"])
def test_bad_transform_is_a_clear_error(bad, message):
    """Checked before any launch: no interpreter needed."""
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conv_fused_fwd([x], [InputTransform(**bad)], torch.randn(5, 3, 4, 4), stride=2,
                       padding=1)


def test_mixed_operand_dtypes_are_a_clear_error():
    with pytest.raises(TypeError, match="share one dtype"):
        conv_fused_fwd([torch.randn(1, 3, 4, 4)], [InputTransform()],
                       torch.randn(5, 3, 4, 4, dtype=torch.bfloat16), stride=2, padding=1)
