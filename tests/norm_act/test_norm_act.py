"""The fused norm-act op: Triton kernels (interpreted on CPU, real on GPU) vs the float64 math.

Every case poisons the destination with NaN, writes into a channel slice in the middle of a
wider buffer, and checks the output, the running statistics and every gradient (input, skip,
weight, bias) against ``norm_act_math`` in float64 with the same dropout mask.
"""
import pytest
import torch

from fastp2p.ops import backend_name_for, norm_act, norm_act_concat, norm_act_into
from fastp2p.ops.dropout_rng import dropout_keep_mask
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.forced_backend import force_backend
from helpers.norm_act_cases import (CASES, DEFAULTS, OTHERS, case_id, check_against_reference,
                                    make_case, op_run, reference_run)
from helpers.tolerances import (BF16_VS_AUTOCAST, FP32_SINGLE_OP, assert_close,
                                assert_storage_close, relative_error)
from helpers.triton_interpreter import KERNELS

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")


def _kernels_norm_act():
    """The Triton launchers' module (its tuning constants), imported only where triton is."""
    import fastp2p.kernels.norm_act
    return fastp2p.kernels.norm_act


@pytest.fixture
def triton_backend(monkeypatch):
    """Force the Triton backend (interpreted kernels on CPU tensors) for one test."""
    force_backend(monkeypatch, "triton")
    assert backend_name_for(torch.device("cpu")) == "triton"


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("path", ["one-pass", "split"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_kernel_matches_float64_reference(case, path, triton_backend, monkeypatch):
    """Both paths (forward and backward): the whole group in registers, and the split
    reduction."""
    if path == "split":
        monkeypatch.setattr(_kernels_norm_act(), "ONE_PASS_MAX_ELEMENTS", 0)
    check_against_reference(case, torch.float32, FP32_SINGLE_OP)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_split_reduction_merges_statistics(norm, triton_backend, monkeypatch):
    """Many programs per reduction (as on a GPU), each over several tiles: Chan's merge. The
    tiles are 64 rows, as a GPU's are (2048 // block_c), so that each split loops over five:
    with the interpreter's own 512 each split was one tile, and a merge that dropped its
    delta**2 term passed."""
    kernels = _kernels_norm_act()
    blocks = kernels._blocks
    monkeypatch.setattr(kernels, "_blocks",
                        lambda channels, interpreted: (64, blocks(channels, interpreted)[1]))
    monkeypatch.setattr(kernels, "REDUCTION_PROGRAMS", 6)
    monkeypatch.setattr(kernels, "ONE_PASS_MAX_ELEMENTS", 0)
    case = (norm, True, "leaky_relu", True, 0.0, (2, 5, 24, 40), "nhwc", OTHERS)
    check_against_reference(case, torch.float32, FP32_SINGLE_OP)


@needs_triton
@pytest.mark.interpreter
def test_writes_only_its_slice_in_a_wider_buffer(triton_backend):
    x = torch.randn(2, 5, 3, 4).contiguous(memory_format=torch.channels_last)
    out = torch.full((2, 13, 3, 4), float("nan")).contiguous(memory_format=torch.channels_last)
    norm_act_into(x, None, None, None, None, out, 6, norm="instance", activation="relu")
    expected = torch.relu(torch.nn.functional.instance_norm(x.double()))
    assert_close(out[:, 6:11], expected, FP32_SINGLE_OP, "slice")
    assert out[:, :6].isnan().all() and out[:, 11:].isnan().all()


@needs_triton
@pytest.mark.interpreter
def test_low_precision_in_the_interpreter(triton_backend):
    """bf16 / fp16 loads and stores with fp32 statistics: the output and every gradient against
    float64 on the same stored inputs (the GPU tests cover real shapes)."""
    case = ("instance", True, "leaky_relu", True, 0.0, (2, 6, 4, 4), "nhwc", DEFAULTS)
    for dtype in (torch.bfloat16, torch.float16):
        x64, skip64, weight, bias, running, grad, kwargs, layout = make_case(case, dtype)
        x64, skip64, grad = (t.to(dtype).double() for t in (x64, skip64, grad))
        data = (x64, skip64, weight, bias, running, grad, kwargs)
        expected, expected_grads, _ = reference_run(*data)
        got, got_grads, _ = op_run(*data, layout, dtype)
        assert_storage_close(got, expected, f"{dtype} output", interpreted=True)
        for name, g, e in zip(("x", "skip", "weight", "bias"), got_grads, expected_grads):
            assert_storage_close(g, e, f"{dtype} grad {name}", interpreted=True)


# --------------------------------------------------------------------------------- dropout

def _dropout_only(x, p, seed, offset):
    out = torch.full_like(x, float("nan"))
    norm_act_into(x, None, None, None, None, out, 0, norm="none", activation="none",
                  dropout_p=p, seed=seed, offset=offset)
    return out


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("seed,offset", [(1234, 99), (2 ** 40 + 5, 2 ** 33 - 7)])
def test_dropout_mask_is_bit_equal_to_the_contract(seed, offset, triton_backend):
    x = torch.ones(2, 7, 5, 3).contiguous(memory_format=torch.channels_last)
    out = _dropout_only(x, 0.3, seed, offset)
    keep = dropout_keep_mask(tuple(x.shape), 0.3, seed, offset)
    assert torch.equal(out != 0, keep)
    assert torch.equal(out[keep], torch.full_like(out[keep], 1 / 0.7))
    # The device-scalar form (what a CUDA graph replays) draws the same bits.
    as_tensors = _dropout_only(x, 0.3, torch.tensor(seed), torch.tensor(offset))
    assert torch.equal(as_tensors, out)


@needs_triton
@pytest.mark.interpreter
def test_dropout_keeps_one_minus_p_and_is_reproducible(triton_backend):
    x = torch.ones(1, 16, 32, 32)
    first = _dropout_only(x, 0.5, 5, 0)
    kept = (first != 0).double().mean().item()
    assert abs(kept - 0.5) < 5 * (0.25 / x.numel()) ** 0.5
    assert torch.equal(first, _dropout_only(x, 0.5, 5, 0))
    assert not torch.equal(first, _dropout_only(x, 0.5, 5, x.numel()))


@needs_triton
@pytest.mark.interpreter
def test_dropout_backward_uses_the_forward_mask(triton_backend):
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    skip = torch.randn(2, 1, 3, 3)
    y = norm_act_concat(skip, x, norm="none", activation="none", dropout_p=0.5, seed=9, offset=4)
    y.backward(torch.ones_like(y))
    keep = dropout_keep_mask(tuple(x.shape), 0.5, 9, 4)
    assert torch.equal(y[:, 1:] != 0, keep & (x != 0))
    assert torch.equal(x.grad, keep.float() * 2)


# --------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call,message", [
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(2, 3)), "(N, C, H, W)"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.ones(1, 3, 3, 3, dtype=torch.int32)),
     "expects x in"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3), torch.ones(4),
                             torch.ones(4)), "weight must have shape (3,)"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3), torch.ones(3)),
     "both weight and bias"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3),
                             torch.ones(3, device="meta"), torch.ones(3, device="meta")),
     "weight is on meta"),
    (lambda: norm_act_concat(torch.rand(1, 2, 4, 3), torch.rand(1, 3, 3, 3)), "skip must be"),
    (lambda: norm_act_concat(torch.rand(1, 2, 1, 1), torch.rand(2, 3, 1, 1)),
     "more than 1 spatial element"),
    (lambda: norm_act_concat(torch.rand(1, 2, 1, 1), torch.rand(1, 3, 1, 1), norm="batch"),
     "more than 1 value per channel"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3), norm="group"),
     "norm must be one of"),
    (lambda: norm_act_concat(torch.rand(1, 2, 3, 3), torch.rand(1, 3, 3, 3), dropout_p=1.0),
     "dropout p must be in [0, 1)"),
    (lambda: norm_act_into(torch.rand(1, 3, 3, 3), None, None, None, None,
                           torch.empty(1, 4, 3, 3), 2), "do not fit a destination"),
    (lambda: norm_act_into(torch.rand(1, 3, 3, 3), None, None, None, None,
                           torch.empty(1, 4, 3, 3, dtype=torch.float16), 0),
     "destination must be torch.float32"),
], ids=["rank", "dtype", "weight-shape", "affine-pair", "device", "skip-shape", "instance-1x1",
        "batch-1x1-N1", "norm-name", "dropout-p", "slice-fit", "out-dtype"])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        call()


@needs_triton
@pytest.mark.interpreter
def test_triton_backend_rejects_float64(triton_backend):
    with pytest.raises(ValueError, match="triton backend expects"):
        norm_act_concat(torch.rand(1, 2, 3, 3, dtype=torch.float64),
                        torch.rand(1, 3, 3, 3, dtype=torch.float64))


# --------------------------------------------------------------------------------- GPU

# (C, H) of every norm-act of U-Net-256 (down and up) and the PatchGAN (its 31x31 layer is 512)
U_NET_256_NORM_SHAPES = [
    (64, 128), (128, 64), (256, 32), (512, 16), (512, 8), (512, 4), (512, 2), (512, 31)]


@pytest.mark.cuda
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_gpu_real_shapes(batch, dtype, norm, monkeypatch):
    """Every real norm-act layer shape, forward and every gradient, vs float64; in bf16/fp16
    also against PyTorch's own error in that dtype (DESIGN §5: <= 1.5x it, or 1.5x the error of
    storing the exact result in the dtype where PyTorch's is below that). Every other shape runs
    LeakyReLU at OTHERS' momentum, eps and slope (one-pass and split reductions both ways), the
    rest ReLU at torch's defaults."""
    force_backend(monkeypatch, "triton")
    torch.manual_seed(0)
    for index, (channels, size) in enumerate(U_NET_256_NORM_SHAPES):
        activation, settings = ("leaky_relu", OTHERS) if index % 2 else ("relu", DEFAULTS)
        case = (norm, True, activation, True, 0.5 if size <= 16 else 0.0,
                (batch, channels, size, size), "nhwc", settings)
        data = [_to_cuda(t) for t in make_case(case, dtype)]
        # The float64 oracle gets x, skip and the output gradient as stored in dtype (DESIGN §5:
        # the same inputs): from the exact values, an element whose ReLU kink lies between its
        # exact and its stored value takes the other branch, and one such element's gradient
        # outweighed PyTorch's whole error (fp16, C512 H16 at OTHERS: 1.61x it on an H200; from
        # the stored inputs, 0.01x through the interpreter).
        data[0], data[1], data[5] = (t.to(dtype).double() for t in (data[0], data[1], data[5]))
        expected, expected_grads, expected_running = reference_run(*data[:-1])
        got, got_grads, got_running = op_run(*data, dtype)
        what = case_id(case)
        if dtype == torch.float32:
            assert_close(got, expected, FP32_SINGLE_OP, what)
            for g, e in zip(got_grads, expected_grads):
                assert_close(g, e, FP32_SINGLE_OP, what)
            if norm == "batch":
                assert_close(got_running[0], expected_running[0], FP32_SINGLE_OP,
                             f"{what} running_mean")
                assert_close(got_running[1], expected_running[1], FP32_SINGLE_OP,
                             f"{what} running_var")
            continue
        # PyTorch's own math in this dtype, on the same inputs and mask (the running statistics
        # too: torch's batch norm refuses float32 ones beside a weight in this dtype)
        x64, skip64, weight, bias, running, grad, kwargs, _ = data
        x = x64.to(dtype).requires_grad_()
        skip = skip64.to(dtype).requires_grad_()
        w, b = weight.to(dtype).requires_grad_(), bias.to(dtype).requires_grad_()
        rm, rv = (None, None) if running is None else (running[0].to(dtype), running[1].to(dtype))
        theirs = torch.cat([torch.relu(skip), norm_act_math(x, w, b, rm, rv, **kwargs)], 1)
        theirs.backward(grad.to(dtype))
        pairs = [(got, theirs, expected)] + list(zip(got_grads, [x.grad, skip.grad, w.grad,
                                                               b.grad], expected_grads))
        if norm == "batch":
            pairs += list(zip(got_running, (rm, rv), expected_running))
        for ours_t, theirs_t, ref in pairs:
            # DESIGN §5: within 1.5x PyTorch's own error, or of the rounding no result in
            # ours_t's dtype avoids where PyTorch's is below it (a lucky short vector)
            floor = relative_error(ref.to(ours_t.dtype), ref)
            bound = BF16_VS_AUTOCAST * max(relative_error(theirs_t, ref), floor)
            assert relative_error(ours_t, ref) <= bound, what


@pytest.mark.cuda
def test_gpu_backward_fp32(monkeypatch):
    force_backend(monkeypatch, "triton")
    for case in CASES:
        data = [_to_cuda(t) for t in make_case(case, torch.float32)]
        expected, expected_grads, expected_running = reference_run(*data[:-1])
        got, got_grads, got_running = op_run(*data, torch.float32)
        assert_close(got, expected, FP32_SINGLE_OP, case_id(case))
        for g, e in zip(got_grads, expected_grads):
            assert_close(g, e, FP32_SINGLE_OP, case_id(case))
        if case[0] == "batch":
            assert_close(got_running[0], expected_running[0], FP32_SINGLE_OP,
                         f"{case_id(case)} running_mean")
            assert_close(got_running[1], expected_running[1], FP32_SINGLE_OP,
                         f"{case_id(case)} running_var")


def _to_cuda(t):
    if isinstance(t, torch.Tensor):
        return t.cuda()
    if isinstance(t, tuple):
        return tuple(_to_cuda(u) for u in t)
    return t


@pytest.mark.cuda
def test_gpu_cuda_graph_replay_reads_the_current_offset(monkeypatch):
    force_backend(monkeypatch, "triton")
    x = torch.randn(4, 64, 16, 16, device="cuda").contiguous(memory_format=torch.channels_last)
    rng = torch.tensor([7, 0], device="cuda", dtype=torch.int64)
    out = torch.empty_like(x)

    def step():
        norm_act_into(x, None, None, None, None, out, 0, norm="instance", activation="relu",
                      dropout_p=0.5, seed=rng[0], offset=rng[1])

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for offset in (0, x.numel(), 5 * x.numel()):
        rng[1] = offset
        out.fill_(float("nan"))
        graph.replay()
        expected = torch.relu(torch.nn.functional.instance_norm(x.double()))
        keep = dropout_keep_mask(tuple(x.shape), 0.5, 7, offset, device="cuda")
        expected = torch.where(keep, expected * 2, torch.zeros_like(expected))
        assert_close(out, expected, FP32_SINGLE_OP, f"offset {offset}")


@pytest.mark.cuda
def test_gpu_torch_compile_has_no_graph_break(monkeypatch):
    force_backend(monkeypatch, "triton")
    from fastp2p.ops import norm_act

    def block(x, w, b):
        return norm_act(x, w, b, norm="instance", activation="leaky_relu")

    x = torch.randn(2, 32, 8, 8, device="cuda")
    w, b = torch.rand(32, device="cuda"), torch.rand(32, device="cuda")
    compiled = torch.compile(block, fullgraph=True)
    assert_close(compiled(x, w, b), block(x, w, b), FP32_SINGLE_OP, "compiled")


def test_eager_calls_skip_the_custom_op_dispatch_and_still_bump_versions(monkeypatch):
    """Eager forward and backward call the implementations directly (the op's dispatch costs
    more host time than small kernels take); the running stats still count as modified."""
    import importlib
    module = importlib.import_module("fastp2p.ops.norm_act")  # the package exports a function

    def through_the_op(*args, **kwargs):
        raise AssertionError("an eager call went through the custom op's dispatch")
    monkeypatch.setattr(module, "_norm_act_fwd_op", through_the_op)
    monkeypatch.setattr(module, "_norm_act_bwd_op", through_the_op)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    running_mean, running_var = torch.zeros(4), torch.ones(4)
    version = running_mean._version
    y = module.norm_act(x, None, None, running_mean, running_var, norm="batch",
                        activation="relu")
    y.sum().backward()
    assert running_mean._version > version and x.grad is not None
    assert running_mean.abs().sum() > 0  # updated by the kernel


@pytest.mark.parametrize("activation,slope,p", [
    ("leaky_relu", 0.2, 0.0), ("leaky_relu", 0.2, 0.5), ("relu", 0.0, 0.5), ("none", 0.0, 0.3),
    ("leaky_relu", -0.5, 0.0)])  # a negative slope flips signs: that case keeps x
def test_no_norm_layers_backward_from_their_output_matches_float64(backend, activation,
                                                                   slope, p):
    """norm='none' without affine saves the output instead of x for the backward."""
    gen = torch.Generator().manual_seed(3)
    x64 = torch.randn(2, 5, 4, 6, generator=gen, dtype=torch.float64)
    x64[0, 1] = 0.0  # the derivative at exactly 0 follows PyTorch's (x > 0) convention
    grad = torch.randn(x64.shape, generator=gen, dtype=torch.float64)
    kwargs = dict(norm="none", activation=activation, slope=slope, dropout_p=p, seed=21,
                  offset=5)
    x = x64.float().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = norm_act(x, **kwargs)
    y.backward(grad.float())
    ref = x64.clone().requires_grad_()
    norm_act_math(ref, None, None, None, None, training=True, momentum=0.1, eps=1e-5,
                  **kwargs).backward(grad)
    assert_close(x.grad, ref.grad, FP32_SINGLE_OP, "grad x")


def test_networks_save_no_more_activations_for_backward_than_the_reference():
    """What autograd keeps between forward and backward (the bulk of a training step's peak
    memory), counted by storage: fastp2p's U-Net and PatchGAN keep no more than the reference
    modules (their no-norm layers keep the output that the next convolution keeps anyway, and
    dropout masks are regenerated, not kept)."""
    from fastp2p.bench.networks import NetworkConfig, build_pair

    config = NetworkConfig(image_size=64, num_downs=6, ngf=8, ndf=8)

    def activation_bytes(net, x):
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        kept = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                kept[storage.data_ptr()] = storage.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(x)
        return sum(kept.values()), out

    totals = {}
    for fast in (False, True):
        generator, discriminator = build_pair(config, fast=fast, device="cpu", seed=0)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        kept_g, fake = activation_bytes(generator, x)
        kept_d, _ = activation_bytes(discriminator, torch.cat([x, fake.detach()], 1))
        totals[fast] = (kept_g, kept_d)
    assert totals[True][0] <= totals[False][0], f"U-Net: {totals}"
    assert totals[True][1] <= totals[False][1], f"PatchGAN: {totals}"
