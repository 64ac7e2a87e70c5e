"""fastp2p._C's fused norm-act launchers against the float64 oracle (DESIGN §5: 1e-5 for
float32)."""
import pytest
import torch

from helpers.cpp_backend_helpers import (case_id, cpp_backend, double, make_inputs, oracle_backward,
                                 poisoned, reference_fwd, requires_extension, shape_id)
from fastp2p.ops.dropout_rng import dropout_keep_mask
from helpers.tolerances import FP32_SINGLE_OP, assert_close, assert_storage_close

pytestmark = requires_extension

# (2, 40, 24, 20) is above the kernels' parallel grain (2**15 elements): it runs the OpenMP path.
# (2, 300, 2, 3): more channels than a channels-last segment's chunk (kChunk, 256), as U-Net-256's
# 512-channel layers have; a forward that read every chunk's statistics from the first chunk's
# channels passed every smaller shape (0.93 relative error here).
SHAPES = [(2, 5, 6, 7), (1, 3, 2, 2), (3, 7, 1, 1), (1, 64, 4, 4), (2, 17, 9, 3), (2, 40, 24, 20),
          (2, 300, 2, 3)]
# momentum, eps and LeakyReLU slope: torch's defaults (no settings), or values a kernel ignoring its
# argument cannot match (eps 0.5 moves rstd by about 8% against x's variance of about 2.9, and by
# 13 to 29% in eval, whose running variance is in [0.5, 1.5]).
OTHERS = dict(momentum=0.3, eps=0.5, slope=0.05)
CASES = [  # norm, training, activation, affine, dropout_p, settings
    ("instance", True, "leaky_relu", False, 0.0, OTHERS),
    ("instance", True, "relu", True, 0.5, {}),
    ("batch", True, "leaky_relu", True, 0.0, OTHERS),
    ("batch", True, "relu", True, 0.3, {}),
    ("batch", False, "relu", True, 0.0, OTHERS),
    ("batch", False, "none", False, 0.5, {}),
    ("none", True, "relu", False, 0.0, {}),
    ("none", True, "leaky_relu", True, 0.5, OTHERS),
]


def copies(tensors):
    """Clones (None stays None): a forward that updates running stats in place leaves the
    originals for the oracle."""
    return [None if t is None else t.clone() for t in tensors]


def over_cases_shapes_layouts(test):
    """Parametrizes a test over every (case, shape, layout) of the float32 comparisons."""
    test = pytest.mark.parametrize("case", CASES, ids=case_id)(test)
    test = pytest.mark.parametrize("shape", SHAPES, ids=shape_id)(test)
    return pytest.mark.parametrize("layout", ["nchw", "nhwc"])(test)


def case_inputs(case, shape, layout, seed):
    """make_inputs for a float32 case; skips the shapes the reference module rejects."""
    norm, training, _, affine, _, _ = case
    n, _, h, w = shape
    if (norm == "instance" and h * w == 1) or (norm == "batch" and training and n * h * w == 1):
        pytest.skip("the reference module rejects this shape (one value per channel)")
    return make_inputs(shape, affine=affine, norm=norm, dtype=torch.float32, layout=layout,
                       seed=seed)


def kwargs(norm, training, activation, p, settings=None, seed=1234, offset=99):
    """The launchers' arguments: torch's defaults unless ``settings`` replaces some."""
    return dict(dict(norm=norm, training=training, momentum=0.1, eps=1e-5, activation=activation,
                     slope=0.2, dropout_p=p, seed=seed, offset=offset), **(settings or {}))


@over_cases_shapes_layouts
def test_forward_matches_reference_and_writes_only_its_slice(case, shape, layout):
    norm, training, activation, affine, p, settings = case
    x, weight, bias, running = case_inputs(case, shape, layout, seed=0)
    n, c, h, w = shape
    out = poisoned((n, c + 5, h, w), torch.float32, layout)
    expected = torch.full((n, c + 5, h, w), float("nan"), dtype=torch.float64)
    running64 = [double(t) for t in running]
    kw = kwargs(norm, training, activation, p, settings)
    mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, *running, out, 3, **kw)
    mean64, rstd64 = reference_fwd(double(x), double(weight), double(bias), *running64, expected,
                                   3, **kw)
    assert_close(out[:, 3:3 + c], expected[:, 3:3 + c], FP32_SINGLE_OP, "output slice")
    assert out[:, :3].isnan().all() and out[:, 3 + c:].isnan().all(), "wrote outside its slice"
    assert mean.dtype == rstd.dtype == torch.float32 and mean.shape == mean64.shape
    if norm != "none":
        assert_close(mean, mean64, FP32_SINGLE_OP, "mean")
        assert_close(rstd, rstd64, FP32_SINGLE_OP, "rstd")
    if norm == "batch":
        assert_close(running[0], running64[0], FP32_SINGLE_OP, "running_mean")
        assert_close(running[1], running64[1], FP32_SINGLE_OP, "running_var")


@over_cases_shapes_layouts
def test_backward_matches_autograd_of_the_reference(case, shape, layout):
    norm, training, activation, affine, p, settings = case
    x, weight, bias, running = case_inputs(case, shape, layout, seed=1)
    n, c, h, w = shape
    kw = kwargs(norm, training, activation, p, settings)
    out = poisoned((n, c, h, w), torch.float32, layout)
    mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, *copies(running), out, 0, **kw)
    # The gradient arrives as a channel slice of a wider buffer whose other channels are NaN.
    grad_buffer = poisoned((n, c + 4, h, w), torch.float32, layout)
    grad_buffer[:, 2:2 + c] = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    grad_out = grad_buffer[:, 2:2 + c]
    grad_x, grad_weight, grad_bias = cpp_backend.norm_act_bwd(
        grad_out, x, weight, bias, mean, rstd, norm=norm, activation=activation,
        slope=kw["slope"], dropout_p=p, seed=1234, offset=99, training=training)
    expected = oracle_backward(x, weight, bias, running, grad_out, **kw)
    assert grad_x.dtype == x.dtype and grad_x.shape == x.shape
    assert_close(grad_x, expected[0], FP32_SINGLE_OP, "grad_x")
    if affine:
        assert_close(grad_weight, expected[1], FP32_SINGLE_OP, "grad_weight")
        assert_close(grad_bias, expected[2], FP32_SINGLE_OP, "grad_bias")
    else:
        assert grad_weight is None and grad_bias is None


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nchw_row_view"])
def test_thread_ranges_that_start_inside_an_image(layout):
    """Four threads on a map above the parallel grain: each thread counts its segments'
    coordinates up from its range's first segment, and here those start inside a sample (NCHW:
    at channels 3, 2 and 1 of samples 0, 1 and 2, as planes or, for a view whose rows are not
    back to back, as rows; channels-last: mid-row). A miscount shows in the per-channel scale
    and in the dropout mask, which is indexed by each element's NCHW position."""
    shape, case = (3, 5, 47, 53), ("batch", True, "leaky_relu", True, 0.3, {})
    x, weight, bias, running = case_inputs(case, shape, "nhwc" if layout == "nhwc" else "nchw",
                                           seed=5)
    if layout == "nchw_row_view":  # rows 60 apart: the planes are not merged into one row
        x = torch.cat([x, torch.randn(3, 5, 47, 7)], dim=3)[..., :53]
    kw = kwargs(*case[:3], case[4])
    out_layout = "nhwc" if layout == "nhwc" else "nchw"
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        out = poisoned(shape, torch.float32, out_layout)
        mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, *copies(running), out, 0, **kw)
        grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(6))
        grad_x, grad_weight, grad_bias = cpp_backend.norm_act_bwd(
            grad_out, x, weight, bias, mean, rstd, norm="batch", activation="leaky_relu",
            slope=0.2, dropout_p=0.3, seed=1234, offset=99, training=True)
    finally:
        torch.set_num_threads(threads)
    expected = torch.empty(shape, dtype=torch.float64)
    reference_fwd(double(x), double(weight), double(bias), *[double(t) for t in running],
                  expected, 0, **kw)
    assert_close(out, expected, FP32_SINGLE_OP, "output")
    expected_grads = oracle_backward(x, weight, bias, running, grad_out, **kw)
    for got, want, what in zip((grad_x, grad_weight, grad_bias), expected_grads,
                               ("grad_x", "grad_weight", "grad_bias")):
        assert_close(got, want, FP32_SINGLE_OP, what)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("seed,offset", [(1234, 99), (2 ** 40 + 5, 2 ** 33 - 7), (-3, 0)])
def test_dropout_mask_is_bit_identical_to_the_contract(layout, seed, offset):
    shape = (2, 6, 5, 7)
    memory_format = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x = (torch.rand(shape) + 0.5).to(memory_format=memory_format)
    out = poisoned(shape, torch.float32, layout)
    cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, norm="none", training=True,
                             momentum=0.1, eps=1e-5, activation="none", slope=0.0, dropout_p=0.4,
                             seed=seed, offset=offset)
    keep = dropout_keep_mask(shape, 0.4, seed, offset)
    assert torch.equal(out != 0, keep)
    torch.testing.assert_close(out[keep], (x / 0.6)[keep], rtol=2e-7, atol=0)  # x * (1 / 0.6)


def test_seed_and_offset_may_be_int64_tensors():
    """The graph-replay form of the counters (tensors) draws the same mask as the ints."""
    shape = (2, 3, 4, 5)
    x = torch.rand(shape) + 0.5
    out = torch.empty_like(x)
    cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, norm="none", training=True,
                             momentum=0.1, eps=1e-5, activation="none", slope=0.0, dropout_p=0.5,
                             seed=torch.tensor([2 ** 35 + 9]), offset=torch.tensor(1000))
    assert torch.equal(out != 0, dropout_keep_mask(shape, 0.5, 2 ** 35 + 9, 1000))


def test_non_contiguous_input_and_mismatched_out_layout():
    """x with no unit stride (a transposed view) and an NCHW out for a channels-last x."""
    base = torch.randn(2, 4, 6, 5)
    x = base.transpose(2, 3)  # (2, 4, 5, 6) with W stride 5
    weight, bias = torch.rand(4) + 0.5, torch.randn(4)
    out = torch.full((2, 6, 5, 6), float("nan"))
    kw = kwargs("instance", True, "relu", 0.5)
    mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, None, None, out, 1, **kw)
    expected = torch.full((2, 6, 5, 6), float("nan"), dtype=torch.float64)
    reference_fwd(double(x), double(weight), double(bias), None, None, expected, 1, **kw)
    assert_close(out[:, 1:5], expected[:, 1:5], FP32_SINGLE_OP, "transposed x")
    assert out[:, 0].isnan().all() and out[:, 5].isnan().all()
    grad_out = torch.randn(2, 4, 5, 6).to(memory_format=torch.channels_last)
    grad_x, grad_weight, _ = cpp_backend.norm_act_bwd(grad_out, x, weight, bias, mean, rstd,
                                                      norm="instance", activation="relu", slope=0.0,
                                                      dropout_p=0.5, seed=1234, offset=99)
    oracle = oracle_backward(x, weight, bias, (None, None), grad_out, **kw)
    assert_close(grad_x, oracle[0], FP32_SINGLE_OP, "grad_x")
    assert_close(grad_weight, oracle[1], FP32_SINGLE_OP, "grad_weight")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_low_precision_storage_is_within_its_own_rounding(dtype, layout, norm):
    """DESIGN §5's 16-bit rule (assert_storage_close): outputs and grad_x within 1.5x the error
    of storing the float64 result in the dtype (measured: 1.00x), the float32 parameter
    gradients within the float32 single-op bound (measured: ~5e-8)."""
    shape = (2, 24, 8, 8)
    x, weight, bias, running = make_inputs(shape, affine=True, norm=norm, dtype=dtype,
                                           layout=layout)
    kw = kwargs(norm, True, "leaky_relu", 0.5)
    out = poisoned(shape, dtype, layout)
    cpp_backend.norm_act_fwd(x, weight, bias, *running, out, 0, **kw)
    running64 = [double(t) for t in running]
    exact = torch.empty(shape, dtype=torch.float64)
    reference_fwd(double(x), double(weight), double(bias), *running64, exact, 0, **kw)
    assert_storage_close(out, exact, "output")
    grad_out = torch.randn(shape).to(dtype)
    # Backward with batch statistics (no running stats: the forward above updated them).
    mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, None, None, out, 0, **kw)
    grads = cpp_backend.norm_act_bwd(grad_out, x, weight, bias, mean, rstd, norm=norm,
                                     activation="leaky_relu", slope=0.2, dropout_p=0.5,
                                     seed=1234, offset=99)
    assert grads[0].dtype == dtype
    oracle = oracle_backward(x, weight, bias, (None, None), grad_out, **kw)
    for name, got, expected in zip(("grad_x", "grad_weight", "grad_bias"), grads, oracle):
        assert_storage_close(got, expected, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
def test_identity_round_trips_every_bit_pattern_class(dtype):
    """norm none, no affine, no activation: out must equal x bit for bit, specials included
    (the storage conversions of csrc/cpu/storage.h both ways, subnormals, infinities, NaN, -0)."""
    info = torch.finfo(dtype)
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), info.max,
                             -info.max, info.tiny, info.tiny / 4, -info.tiny / 8, 1.0, -2.5],
                            dtype=torch.float32).to(dtype)
    filler = torch.randn(4 * 3 * 5 * 2 - specials.numel()).to(dtype)
    x = torch.cat([specials, filler]).view(4, 3, 5, 2)
    out = torch.empty_like(x)
    cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, norm="none", training=True,
                             momentum=0.1, eps=1e-5, activation="none", slope=0.0, dropout_p=0.0,
                             seed=0, offset=0)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    # The kernel computes x * 1 + 0, which turns -0 into +0 (IEEE): so does `x + 0` here.
    # NaN payloads carry no meaning (and differ between CPUs' default NaNs): compare NaN-ness.
    nan = x.isnan()
    assert torch.equal(out.isnan(), nan)
    assert torch.equal(out.view(bits)[~nan], (x + 0.0).view(bits)[~nan])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_rounding_to_storage_matches_pytorch(dtype):
    """float32 results are rounded to the storage dtype exactly as PyTorch rounds (nearest even)."""
    values = torch.randn(2, 8, 16, 16) * torch.logspace(-9, 4, 16).view(1, 1, 1, 16)
    scale = torch.full((8,), 1.0 + 2.0 ** -12)  # moves values off the storage grid
    x32 = values.to(dtype).float()
    out = torch.empty(values.shape, dtype=dtype)
    cpp_backend.norm_act_fwd(values.to(dtype), scale, torch.zeros(8), None, None, out, 0,
                             norm="none", training=True, momentum=0.1, eps=1e-5,
                             activation="none", slope=0.0, dropout_p=0.0, seed=0, offset=0)
    expected = (x32 * scale.view(1, -1, 1, 1) + 0.0).to(dtype)  # + 0: the kernel's zero shift
    bits = torch.int16
    assert torch.equal(out.view(bits), expected.view(bits))
