"""The decoder's transposed convolutions as GEMM + C++ col2im (CPU float32 inference): the op
against float64 ``F.conv_transpose2d``, the kernel's boundary checks, when the U-Net routes
through it, and whole-network inference against the float64 reference."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.cpp_backend_helpers import LAYOUTS, requires_extension
from helpers.forced_backend import force_backend
from helpers.network_checks import unet_pair
from fastp2p.ops import conv_transpose
from fastp2p.ops.backends import cpp as cpp_backend
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close

pytestmark = requires_extension

# (batch, in_channels, out_channels, height, width, kernel, stride, padding)
SHAPES = [
    (1, 8, 4, 1, 1, 4, 2, 1),     # the innermost U-Net level: a 1x1 map
    (2, 6, 5, 3, 5, 4, 2, 1),     # odd sizes, batch 2
    (1, 16, 3, 8, 8, 4, 2, 1),    # the outermost level's 3 output channels
    (2, 5, 7, 4, 3, 3, 1, 1),     # stride 1
    (1, 4, 6, 5, 4, 3, 2, 0),     # windows that do not tile the output evenly
    (1, 3, 4, 2, 3, 2, 2, 0),     # kernel == stride: no overlap
]


def _case(shape, seed=0):
    n, cin, cout, h, w, k, _, _ = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen) * 1.3 + 0.2
    weight = torch.randn(cin, cout, k, k, generator=gen) * 0.3
    bias = torch.randn(cout, generator=gen)
    return x, weight, bias


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("weight_layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES,
                         ids=lambda s: "N{}-Cin{}-Cout{}-H{}-W{}-k{}s{}p{}".format(*s))
def test_matches_float64_conv_transpose(shape, layout, weight_layout, with_bias):
    x, weight, bias = _case(shape)
    bias = bias if with_bias else None
    stride, padding = shape[6], shape[7]
    expected = F.conv_transpose2d(x.double(), weight.double(),
                                  None if bias is None else bias.double(), stride, padding)
    out = cpp_backend.conv_transpose2d_fwd(
        x.to(memory_format=LAYOUTS[layout]), weight.to(memory_format=LAYOUTS[weight_layout]),
        bias, stride=stride, padding=padding)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, expected, FP32_SINGLE_OP, "conv_transpose2d")


@pytest.mark.parametrize("budget", [1, 3 * 5 * 6 * 16 * 4 * 2], ids=["one-image", "two-images"])
def test_large_batches_run_a_few_images_at_a_time(monkeypatch, budget):
    """The GEMM output is bounded by _CONV_COLS_BYTES: a batch of 3 in chunks of 1 or 2."""
    monkeypatch.setattr(cpp_backend, "_CONV_COLS_BYTES", budget)
    x, weight, bias = _case((3, 6, 5, 3, 5, 4, 2, 1))
    out = cpp_backend.conv_transpose2d_fwd(x, weight, bias, stride=2, padding=1)
    assert_close(out, F.conv_transpose2d(x.double(), weight.double(), bias.double(), 2, 1),
                 FP32_SINGLE_OP, "chunked")


def test_kernel_writes_every_output_element():
    """The col2im kernel straight into a NaN-poisoned output: every element written."""
    x, weight, bias = _case((2, 6, 5, 3, 5, 4, 2, 1))
    cols = torch.mm(x.permute(0, 2, 3, 1).reshape(-1, 6), weight.reshape(6, -1)).view(2, 3, 5, -1)
    out = torch.full((2, 6, 10, 5), float("nan"))
    cpp_backend._require().col2im_transposed(
        cpp_backend._arg(cols), cpp_backend._arg(bias), cpp_backend._arg(out), 4, 2, 1, True, 2)
    assert_close(out.permute(0, 3, 1, 2), F.conv_transpose2d(x.double(), weight.double(),
                                                             bias.double(), 2, 1),
                 FP32_SINGLE_OP, "poisoned out")


def test_bad_arguments_fail_in_the_gemm_or_at_the_extension_checks():
    """The adapter re-checks nothing the op checked (contract.py): a bad direct call fails in
    torch's GEMM or at the C++ CHECKs, never silently."""
    x, weight, bias = _case((1, 4, 3, 4, 4, 4, 2, 1))
    with pytest.raises(RuntimeError, match="dtype"):
        cpp_backend.conv_transpose2d_fwd(x.double(), weight, bias, stride=2, padding=1)
    with pytest.raises(ValueError, match="cols must have size 48 in dimension 3"):
        cpp_backend.conv_transpose2d_fwd(x, weight[:3], bias, stride=2, padding=1)
    with pytest.raises(ValueError, match="bias"):
        cpp_backend.conv_transpose2d_fwd(x, weight, bias[:2], stride=2, padding=1)
    cols = torch.zeros(1, 4, 4, 3 * 16)
    out = torch.zeros(1, 9, 8, 3)  # 9 rows: a stride-2 4x4 transposed conv of 4 rows gives 8
    with pytest.raises(ValueError, match="out must have size 8 in dimension 1"):
        cpp_backend._require().col2im_transposed(cpp_backend._arg(cols), None,
                                                 cpp_backend._arg(out), 4, 2, 1, True, 1)


@pytest.fixture
def gemm_calls(monkeypatch):
    """Counts the calls that take the GEMM + col2im form."""
    calls = []
    original = cpp_backend.conv_transpose2d_fwd

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(cpp_backend, "conv_transpose2d_fwd", counting)
    return calls


def _unet_pair(norm):
    ours, theirs = unet_pair(norm, 5, use_dropout=True)
    return ours.eval(), theirs.eval()


def test_unet_routes_only_cpu_float32_inference_through_it(monkeypatch, gemm_calls):
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, "gemm")
    ours, _ = _unet_pair("batch")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ours(x)
    assert len(gemm_calls) == 5  # one per U-Net level
    ours(x)  # gradients wanted: the module's own transposed convolution (autograd)
    with torch.no_grad():  # bfloat16: the module's own (oneDNN) transposed convolution
        ours.bfloat16()(x.bfloat16())
    assert len(gemm_calls) == 5
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    with torch.no_grad():
        ours.float()(x)
    assert len(gemm_calls) == 5


@pytest.mark.parametrize("model_layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_inference_matches_float64_reference(monkeypatch, gemm_calls, norm, layout,
                                                  model_layout):
    force_backend(monkeypatch, "cpp")
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, "gemm")
    ours, theirs64 = _unet_pair(norm)
    with torch.no_grad():  # one train step first, so the running statistics are not defaults
        warmup = torch.randn(2, 3, 32, 32)
        ours.train()(warmup)
        theirs64.train()(warmup.double())
    ours.eval().to(memory_format=LAYOUTS[model_layout])
    theirs64.eval()
    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1).to(
        memory_format=LAYOUTS[layout])
    with torch.inference_mode():
        out = ours(x)
    assert_close(out, theirs64(x.double()).detach(), FP32_NETWORK, f"unet-{norm} inference")
    assert len(gemm_calls) >= 5


def test_module_settings_it_does_not_cover_run_the_module(monkeypatch, gemm_calls):
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    x = torch.randn(1, 4, 3, 3)
    for module in (nn.ConvTranspose2d(4, 2, 4, 2, 1, output_padding=1),
                   nn.ConvTranspose2d(4, 2, 3, 2, 1, dilation=2),
                   nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),
                   nn.ConvTranspose2d(4, 2, (4, 2), 2, 1),
                   nn.ConvTranspose2d(4, 2, 4, 2, (1, 2)),     # padding other along W
                   nn.ConvTranspose2d(4, 2, 4, (2, 1), 1)):    # stride other along W
        with torch.no_grad():
            assert torch.equal(conv_transpose.conv_transpose2d(module, x), module(x))
    assert gemm_calls == []
