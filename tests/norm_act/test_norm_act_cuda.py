"""fastp2p._C's CUDA norm-act kernels against the float64 oracle (run on a GPU; skipped
without)."""
import pytest
import torch

from helpers.cpp_backend_helpers import (LAYOUTS, case_id, cpp_backend, double, make_inputs,
                                         oracle_backward, poisoned, reference_fwd, shape_id)
from helpers.norm_act_cases import OTHERS
from fastp2p.ops.dropout_rng import dropout_keep_mask
from helpers.tolerances import FP32_SINGLE_OP, assert_close, assert_storage_close

pytestmark = pytest.mark.cuda

# Channel counts: multiples of 8 take the 16-byte vector path, odd ones the scalar path.
SHAPES = [(2, 64, 16, 16), (2, 5, 6, 7), (1, 512, 2, 2), (3, 24, 1, 1), (4, 128, 32, 32)]
# momentum, eps and LeakyReLU slope: torch's defaults (no settings), or OTHERS, which a kernel
# ignoring its argument cannot match (eps 0.5 moves rstd by about 8% against x's variance of about
# 2.9, and by 13 to 29% in eval, whose running variance is in [0.5, 1.5]; slope 0.05 and momentum
# 0.3 move the negative outputs and the running statistics far past the bounds).
CASES = [  # norm, training, activation, affine, dropout_p, settings
    ("instance", True, "leaky_relu", False, 0.0, OTHERS),
    ("instance", True, "relu", True, 0.5, {}),
    ("batch", True, "leaky_relu", True, 0.3, OTHERS),
    ("batch", False, "relu", True, 0.0, OTHERS),
    ("none", True, "relu", True, 0.5, {}),
]


def _needs_cuda_build():
    if not cpp_backend.cuda_available():
        pytest.skip(cpp_backend.cuda_unavailable_reason())


def kwargs(norm, training, activation, p, settings=None):
    """The launchers' arguments: torch's defaults unless ``settings`` replaces some."""
    return dict(dict(norm=norm, training=training, momentum=0.1, eps=1e-5, activation=activation,
                     slope=0.2, dropout_p=p, seed=77, offset=2 ** 33 + 5), **(settings or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_forward_and_backward_match_reference(case, shape, layout, dtype):
    _needs_cuda_build()
    norm, training, activation, affine, p, settings = case
    n, c, h, w = shape
    if norm == "instance" and h * w == 1:
        pytest.skip("instance norm of a 1x1 map is rejected, as by nn.InstanceNorm2d")
    x, weight, bias, running = make_inputs(shape, affine=affine, norm=norm, dtype=dtype,
                                           layout=layout, device="cuda")
    running64 = [double(t).cpu() if t is not None else None for t in running]
    kw = kwargs(norm, training, activation, p, settings)
    out = poisoned((n, c + 8, h, w), dtype, layout, device="cuda")
    mean, rstd = cpp_backend.norm_act_fwd(x, weight, bias, *running, out, 8, **kw)
    expected = torch.full((n, c + 8, h, w), float("nan"), dtype=torch.float64)
    mean64, rstd64 = reference_fwd(double(x).cpu(),
                                   *(double(t).cpu() if t is not None else None
                                     for t in (weight, bias)),
                                   *running64, expected, 8, **kw)
    assert out[:, :8].isnan().all()
    if dtype == torch.float32:
        assert_close(out[:, 8:], expected[:, 8:], FP32_SINGLE_OP, "output slice")
        if norm != "none":
            assert_close(rstd, rstd64, FP32_SINGLE_OP, "rstd")
        if norm == "batch":
            assert_close(running[0], running64[0], FP32_SINGLE_OP, "running_mean")
            assert_close(running[1], running64[1], FP32_SINGLE_OP, "running_var")
    else:
        assert_storage_close(out[:, 8:], expected[:, 8:], "output slice")
    grad_out = torch.randn(shape, device="cuda").to(dtype).to(memory_format=LAYOUTS[layout])
    grad_x, grad_weight, grad_bias = cpp_backend.norm_act_bwd(
        grad_out, x, weight, bias, mean, rstd, norm=norm, activation=activation,
        slope=kw["slope"], dropout_p=p, seed=77, offset=2 ** 33 + 5, training=training)
    oracle = oracle_backward(x.cpu(), *(t.cpu() if t is not None else None for t in (weight, bias)),
                             [t.cpu() if t is not None else None for t in running],
                             grad_out.cpu(), **kw)
    assert_storage_close(grad_x, oracle[0], "grad_x")
    if affine:  # as the C++ CPU kernels: 1.00x the storage rounding, float32 sums
        assert_storage_close(grad_weight, oracle[1], "grad_weight")
        assert_storage_close(grad_bias, oracle[2], "grad_bias")


def test_cuda_dropout_bits_match_the_contract():
    _needs_cuda_build()
    shape = (2, 64, 8, 8)
    x = (torch.rand(shape, device="cuda") + 0.5).to(memory_format=torch.channels_last)
    out = torch.empty_like(x)
    cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, norm="none", training=True,
                             momentum=0.1, eps=1e-5, activation="none", slope=0.0, dropout_p=0.5,
                             seed=2 ** 40 + 3, offset=123)
    assert torch.equal((out != 0).cpu(), dropout_keep_mask(shape, 0.5, 2 ** 40 + 3, 123))


def test_cuda_graph_replay_rewrites_the_output():
    _needs_cuda_build()
    x, weight, bias, _ = make_inputs((2, 64, 16, 16), affine=True, norm="instance",
                                     dtype=torch.bfloat16, layout="nhwc", device="cuda")
    out = torch.empty_like(x)
    kw = kwargs("instance", True, "relu", 0.0)
    cpp_backend.norm_act_fwd(x, weight, bias, None, None, out, 0, **kw)  # warm-up
    expected = out.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        cpp_backend.norm_act_fwd(x, weight, bias, None, None, out, 0, **kw)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


def test_cuda_graph_replay_reads_the_advanced_dropout_offset():
    """seed/offset as device tensors: each replay after `offset += numel` draws the next mask."""
    _needs_cuda_build()
    shape = (2, 64, 8, 8)
    x = (torch.rand(shape, device="cuda") + 0.5).to(memory_format=torch.channels_last)
    out = torch.empty_like(x)
    seed = torch.tensor([1234], dtype=torch.int64, device="cuda")
    offset = torch.tensor([0], dtype=torch.int64, device="cuda")
    kw = dict(norm="none", training=True, momentum=0.1, eps=1e-5, activation="none", slope=0.0,
              dropout_p=0.5, seed=seed, offset=offset)
    cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, **kw)  # warm-up
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        cpp_backend.norm_act_fwd(x, None, None, None, None, out, 0, **kw)
    for step in range(3):
        offset.fill_(step * x.numel())
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        expected = dropout_keep_mask(shape, 0.5, 1234, step * x.numel())
        assert torch.equal((out != 0).cpu(), expected), f"replay {step}"
