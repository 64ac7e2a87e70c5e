"""Whole networks through fastp2p.ops vs the reference modules in float64: outputs, the input
gradient, every parameter gradient and the BatchNorm buffers, in train and eval mode.

Train-mode dropout: fastp2p draws counter-based masks (not torch's global RNG), so the
reference runs with the same masks (``dropout_keep_mask``) swapped into its Dropout modules.
"""
import copy
import functools
import itertools

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn import fused
from helpers.forced_backend import force_backend
from helpers.network_checks import (compare_networks, discriminator_pairs, network_pair,
                                    random_images, unet_pair, with_same_masks)
from helpers.tolerances import (BF16_NETWORK, BF16_VS_AUTOCAST, FP32_NETWORK, assert_close,
                                relative_error)
from helpers.triton_interpreter import CPU_BACKEND_PARAMS, KERNELS, REGISTRY_DEFAULT


# Settings other than torch's defaults, which a path that used the defaults cannot match: norm
# layers with eps 0.05 (these networks' pre-norm variances are 2e-4 to 4e-2: going back to 1e-5
# moves the training output by 50%, the eval output by 3%) and BatchNorm momentum 0.3, and the
# down path's LeakyReLUs (outermost first) at slopes OTHER_SLOPES: 0.5 after the first norm; in
# training and in an InstanceNorm network's eval, setting any one of them back to 0.2 moves the
# output by 4e-3 or more (eps 0.5 would leave the deepest under 1e-5). torch's default
# initialization (network_pair: under pix2pix's N(0, 0.02) a wrong slope deep in an eval network
# moves the output by under 1e-4). In the GPU test's U-Net-256 (8 levels, batch norm, the slopes
# repeated below the fourth) eps 1e-5 moves the training output by 40%, momentum 0.1 a running
# statistic by 67% and slopes 0.2 the output by 20% (float64).
OTHER_NORMS = {"batch": functools.partial(nn.BatchNorm2d, eps=0.05, momentum=0.3),
               "instance": functools.partial(nn.InstanceNorm2d, eps=0.05),
               "none": reference.get_norm_layer("none")}
OTHER_SLOPES = (0.05, 0.5, 0.3, 0.1)
# Each backend forced, and none (the registry's choice: the C++ kernels without autograd, torch's
# own norm ops in float32 training), for the whole-network comparisons.
ON_EVERY_ROUTE = pytest.mark.parametrize("backend", [*CPU_BACKEND_PARAMS, REGISTRY_DEFAULT],
                                         indirect=True)


def _unet_with_other_settings(norm, num_downs=5):
    """(fastp2p.UNet, the reference in float64) with OTHER_NORMS[norm] and OTHER_SLOPES (from the
    start again below the fourth level)."""
    ours, theirs = network_pair("unet", OTHER_NORMS[norm], num_downs=num_downs)
    for net in (ours, theirs):
        leaky = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
        assert len(leaky) == num_downs - 1
        for m, slope in zip(leaky, itertools.cycle(OTHER_SLOPES)):
            m.negative_slope = slope
    assert fused.unet_supported(ours)  # the fused forward runs, not the reference one
    return ours, copy.deepcopy(theirs).double()


@pytest.mark.parametrize("layout, settings", [("nchw", "defaults"), ("nhwc", "other")])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@ON_EVERY_ROUTE
def test_unet_matches_reference(backend, norm, train, layout, settings):
    """Training, and eval with a gradient and without one (which runs the inference forward, a
    BatchNorm folded), with torch's default settings or OTHER_NORMS and OTHER_SLOPES."""
    if settings == "defaults":
        ours, theirs64 = unet_pair(norm, 5, use_dropout=False)
    else:
        ours, theirs64 = _unet_with_other_settings(norm)
    x = random_images(32)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    if not train:  # eval after one train step, so the running stats are not the defaults
        with torch.no_grad():
            ours.train()(x)
            theirs64.train()(x.double())
    what = f"unet-{norm}-{settings}"
    compare_networks(ours, theirs64, x, train, what)
    if not train:
        with torch.no_grad():
            out, expected = ours(x), theirs64(x.double())
        assert_close(out, expected, FP32_NETWORK, f"{what} without a gradient")


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_dropout_uses_the_counter_masks_and_advances(backend, norm):
    ours, theirs64 = unet_pair(norm, 6, use_dropout=True)
    ours.set_dropout_rng(77, 1000)
    with_same_masks(theirs64, 77, 1000)
    x = random_images(64)
    compare_networks(ours, theirs64, x, True, f"unet-dropout-{norm}")
    # one dropout block at num_downs=6 (64x64 input): its up output is 2 x 32 x 4 x 4
    assert ours.dropout_rng.tolist() == [77, 1000 + 2 * 32 * 4 * 4]
    ours.zero_grad()
    theirs64.zero_grad()
    compare_networks(ours, theirs64, x, False, "dropout-eval")
    assert ours.dropout_rng.tolist() == [77, 1000 + 2 * 32 * 4 * 4]


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_unet_dropout_without_a_gradient_uses_the_masks_and_advances(backend, norm):
    """Train mode under no_grad (translating with dropout on, as the reference's test.py does
    without --eval) applies the counter's masks and advances it, as with a gradient: with no
    norm, a forward that took the written path for dropout blocks applied none and left the
    counter where it was, and no test ran train mode without a gradient."""
    ours, theirs64 = unet_pair(norm, 6, use_dropout=True)
    ours.set_dropout_rng(77, 1000)
    with_same_masks(theirs64, 77, 1000)
    x = random_images(64)
    with torch.no_grad():
        out, expected = ours.train()(x), theirs64.train()(x.double())
    assert_close(out, expected, FP32_NETWORK, f"unet-dropout-{norm} train without a gradient")
    assert ours.dropout_rng.tolist() == [77, 1000 + 2 * 32 * 4 * 4]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
@ON_EVERY_ROUTE
def test_discriminators_match_reference(backend, norm, train):
    """With OTHER_SLOPES on their LeakyReLUs (the reference's 0.2 runs in every other test): a
    forward that applied 0.2 whatever the module's slope was 0.16 (train) / 0.087 (eval) off."""
    for name, ours, theirs64 in discriminator_pairs(norm):
        for net in (ours, theirs64):
            leaky = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
            for m, slope in zip(leaky, itertools.cycle(OTHER_SLOPES)):
                m.negative_slope = slope
        x = torch.rand(2, 6, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
        compare_networks(ours, theirs64, x, train, name)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_bf16_autocast_within_pytorchs_own_error(backend, norm):
    """DESIGN section 5's bf16 rule on the CPU: fused under bf16 autocast vs float64, no worse
    than 1.5x PyTorch's own autocast error on the same inputs (measured: 0.94x to 0.97x, 1.11x
    through the interpreter, whose bf16 stores round toward zero)."""
    ours, theirs64 = unet_pair(norm, 5, use_dropout=False)
    theirs = copy.deepcopy(theirs64).float()
    x = random_images(32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = theirs64(x.double())
        with torch.autocast("cpu", torch.bfloat16):
            autocast_out = theirs(x)
            out = ours(x)
    error, autocast_error = relative_error(out, expected), relative_error(autocast_out, expected)
    assert error <= BF16_NETWORK
    assert error <= BF16_VS_AUTOCAST * autocast_error, (error, autocast_error)


def test_unsupported_norm_falls_back_to_the_reference_forward():
    """BatchNorm with momentum=None (cumulative average) runs the reference math, unchanged."""
    torch.manual_seed(0)
    factory = lambda c: nn.BatchNorm2d(c, momentum=None)  # noqa: E731
    theirs = reference.UnetGenerator(3, 3, 5, 4, factory)
    ours = fastp2p.UNet(3, 3, 5, 4, norm_layer=factory)
    ours.load_state_dict(theirs.state_dict())
    x = random_images(32)
    assert_close(ours(x), theirs(x), 1e-6, "fallback")


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
@pytest.mark.parametrize("case", ["unet-batch", "unet-instance", "patchgan"])
def test_triton_kernels_reproduce_the_golden_files(golden, monkeypatch, case):
    """The reference implementation's own outputs, gradients and buffer updates at 256x256,
    through the Triton kernels (interpreted): test_golden.py's checks, backend forced."""
    from test_golden import UNET_CASES, _check_against_golden
    force_backend(monkeypatch, "triton")
    if case == "patchgan":
        net, name = fastp2p.PatchDiscriminator(6, ndf=8, n_layers=3, norm="batch"), \
            "golden_patchgan_ndf8.pt"
    else:
        norm = case.split("-")[1]
        net, name = fastp2p.UNet(3, 3, 8, ngf=8, norm=norm), UNET_CASES[norm]
    _check_against_golden(net, golden(name))


@pytest.mark.cuda
@pytest.mark.parametrize("batch", [1, 64])
def test_gpu_unet256_bf16_within_autocast_error(monkeypatch, batch):
    """DESIGN section 5: bf16 whole model within 2e-2 of float64 and no worse than 1.5x
    PyTorch's own bf16 autocast error on the same inputs (forward output). The + 1e-3 is not
    DESIGN's: its one run (an H200) passed without recording the errors, so whether the bound
    holds without it is unknown; the CPU test above, which measured no need for it, has none."""
    force_backend(monkeypatch, "triton")
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.UnetGenerator(
        3, 3, 8, 64, reference.get_norm_layer("batch"))).cuda()
    ours = fastp2p.UNet(3, 3, 8, 64, norm="batch").cuda()
    ours.load_state_dict(theirs.state_dict())
    x = (torch.rand(batch, 3, 256, 256, device="cuda") * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    ours64 = copy.deepcopy(theirs).double()
    with torch.no_grad():
        expected = ours64(x.double())
        with torch.autocast("cuda", torch.bfloat16):
            autocast_out = copy.deepcopy(theirs).to(memory_format=torch.channels_last)(x)
            out = ours.to(memory_format=torch.channels_last)(x)
    error, autocast_error = relative_error(out, expected), relative_error(autocast_out, expected)
    assert error <= BF16_NETWORK
    assert error <= BF16_VS_AUTOCAST * autocast_error + 1e-3, (error, autocast_error)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, settings", [
    (torch.float32, "defaults"), (torch.float16, "defaults"), (torch.float32, "other")],
    ids=["fp32", "fp16", "fp32-other"])
def test_gpu_unet256_forward_and_grads(monkeypatch, dtype, settings):
    """Training mode; also with OTHER_NORMS' eps and momentum and OTHER_SLOPES."""
    force_backend(monkeypatch, "triton")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if settings == "defaults":
        ours, theirs64 = unet_pair("batch", 8, use_dropout=False)
    else:
        ours, theirs64 = _unet_with_other_settings("batch", 8)
    ours, theirs64 = ours.cuda(), theirs64.cuda()
    x = random_images(256).cuda()
    if dtype == torch.float32:
        compare_networks(ours, theirs64, x, True, f"unet256-fp32-{settings}")
    else:
        with torch.autocast("cuda", dtype):
            out = ours(x)
        assert relative_error(out, theirs64(x.double())) <= BF16_NETWORK


@pytest.mark.cuda
def test_gpu_unet_cuda_graph_and_compile(monkeypatch):
    force_backend(monkeypatch, "triton")
    ours = fastp2p.UNet(3, 3, 8, 16, norm="batch", use_dropout=True).cuda().eval()
    x = torch.rand(2, 3, 256, 256, device="cuda")
    expected = ours(x)
    out = torch.empty_like(expected)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        ours(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out.copy_(ours(x))
    out.fill_(float("nan"))
    graph.replay()
    assert_close(out, expected, 1e-6, "graph replay")
    compiled = torch.compile(ours, fullgraph=True)
    assert_close(compiled(x), expected, 1e-5, "compile")


def test_compiles_without_graph_breaks(backend):
    """One graph for the whole forward and backward: Dynamo sees the PatchGAN's fused ops and
    the loss as custom ops, and traces the U-Net's reference forward (fastp2p.nn.tracing)
    (aot_eager: no C++ compiler needed; the GPU test runs inductor)."""
    ours, _ = unet_pair("batch", 5, use_dropout=False)
    disc = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2, norm="instance")
    loss_fn = fastp2p.GANLoss("vanilla")

    def step(a):
        fake = ours(a)
        return loss_fn(disc(torch.cat([a, fake], 1)), True)

    x = random_images(32)
    expected = step(x)
    torch._dynamo.reset()
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    assert_close(compiled(x), expected, 1e-5, "compiled")
    compiled(x).backward()
    assert all(p.grad is not None for p in ours.parameters())


@pytest.mark.cuda
def test_gpu_train_step_graph_replays_fresh_dropout_masks(monkeypatch):
    """Forward + backward captured once; each replay reads the current dropout offset and
    advances it, so replays equal successive eager steps."""
    from fastp2p.ops import l1_loss
    force_backend(monkeypatch, "triton")
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 8, 16, norm="instance", use_dropout=True).cuda()
    eager = copy.deepcopy(net)
    x = torch.rand(2, 3, 256, 256, device="cuda") * 2 - 1
    target = torch.zeros_like(x)

    def step(model):
        model.zero_grad(set_to_none=True)
        out = model(x)
        l1_loss(out, target).backward()
        return out

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step(net)
    torch.cuda.current_stream().wait_stream(side)
    net.set_dropout_rng(5, 0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step(net)
    eager.set_dropout_rng(5, 0)
    for replay in range(2):
        graph.replay()
        expected = step(eager)
        assert_close(captured, expected, 1e-5, f"replay {replay} output")
        # All gradients as one vector: the conv biases before an InstanceNorm have an exact
        # gradient of 0, so alone they would compare rounding noise (~1e-10) with noise.
        assert_close(torch.cat([p.grad.flatten() for p in net.parameters()]),
                     torch.cat([q.grad.flatten() for q in eager.parameters()]), 1e-4,
                     f"replay {replay} gradients")
        assert net.dropout_rng.tolist() == eager.dropout_rng.tolist()
