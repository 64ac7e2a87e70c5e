"""Gaps found by mutation-testing fastp2p.ops' helper modules (aligned_channels, dropout_rng,
definitions, step_losses, stand_ins, split_conv_backward, norm_act_graph_backward) and
fastp2p.train.optimizer_overlap: each test pins one behaviour the rest of the suite left free."""
import pytest
import torch
import torch.nn as nn

from fastp2p.kernels.dropout_rng import LOW32, dropout_threshold, mix32
from fastp2p.ops import aligned_channels, norm_act, split_conv_backward
from fastp2p.ops.definitions import like_memory_format, memory_format_of
from fastp2p.ops.dropout_rng import dropout_keep_mask
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import CPU_BACKEND_PARAMS


# aligned_channels ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 6, 13])
def test_padded_convolutions_reach_the_next_multiple_of_8(channels, monkeypatch):
    """The padding's point (cuDNN's tensor-core kernels): the convolution sees exactly the
    next multiple of 8 channels, not merely some extra zero channels (same function either way)."""
    seen = []
    conv2d, conv_t = split_conv_backward.conv2d, split_conv_backward.conv_transpose2d
    monkeypatch.setattr(split_conv_backward, "conv2d",
                        lambda x, w, *a: seen.append((x.shape[1], w.shape[1])) or conv2d(x, w, *a))
    monkeypatch.setattr(split_conv_backward, "conv_transpose2d",
                        lambda x, w, *a: seen.append((w.shape[1],)) or conv_t(x, w, *a))
    aligned = -(-channels // 8) * 8
    gen = torch.Generator().manual_seed(channels)
    down = nn.Conv2d(channels, 8, 4, 2, 1)
    out = aligned_channels.conv2d_channel_padded(down, torch.randn(1, channels, 8, 8,
                                                                   generator=gen))
    assert seen == [(aligned, aligned)]
    assert_close(out, down(torch.randn(1, channels, 8, 8,
                                       generator=torch.Generator().manual_seed(channels))),
                 FP32_SINGLE_OP, "padded conv")
    seen.clear()
    up = nn.ConvTranspose2d(8, channels, 4, 2, 1)
    x = torch.randn(1, 8, 4, 4, generator=gen)
    out = aligned_channels.conv_transpose2d_channel_padded(up, x)
    assert seen == [(aligned,)] and out.shape[1] == channels
    assert_close(out, up(x), FP32_SINGLE_OP, "padded transposed conv")


# dropout_rng --------------------------------------------------------------------------------


def _offset_hitting_threshold(seed, p, index):
    """The offset at which element ``index``'s 32 bits equal dropout_threshold(p) exactly
    (mix32 is a bijection: xorshifts and odd multipliers invert)."""
    def unxorshift(h, s):
        x = h
        for _ in range(32 // s + 1):
            x = h ^ (x >> s)
        return x
    h = unxorshift(dropout_threshold(p), 16)
    h = (h * pow(0x846CA68B, -1, 2 ** 32)) & LOW32
    h = unxorshift(h, 15)
    h = (h * pow(0x7FEB352D, -1, 2 ** 32)) & LOW32
    preimage = unxorshift(h, 16)
    assert mix32(preimage) == dropout_threshold(p)
    return (preimage - mix32(seed & LOW32) - index) & LOW32


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_bits_equal_to_the_threshold_are_kept_on_every_backend(backend, p):
    """The contract is ``bits >= threshold`` (kept); the boundary value itself, reached by an
    offset computed from mix32's inverse, is kept by the mask and by every backend's kernel."""
    seed, shape, index = 1234, (1, 2, 3, 4), 7
    offset = _offset_hitting_threshold(seed, p, index)
    mask = dropout_keep_mask(shape, p, seed, offset)
    assert mask.flatten()[index].item() is True
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5)) + 0.5
    out = norm_act(x, norm="none", activation="none", dropout_p=p, seed=seed, offset=offset)
    assert torch.equal(out != 0, mask)


# definitions --------------------------------------------------------------------------------


def test_memory_format_of_a_tensor_contiguous_both_ways_is_contiguous():
    """One channel or 1x1 maps: x is contiguous in both formats, and outputs with more
    channels are allocated contiguous (channels-last only where x is not also contiguous)."""
    gen = torch.Generator().manual_seed(0)
    for x in (torch.randn(2, 1, 4, 5, generator=gen), torch.randn(2, 6, 1, 1, generator=gen)):
        assert x.is_contiguous(memory_format=torch.channels_last) and x.is_contiguous()
        assert memory_format_of(x) == torch.contiguous_format
        assert like_memory_format(x, 5).is_contiguous()
    nhwc = torch.randn(2, 3, 4, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    assert memory_format_of(nhwc) == torch.channels_last
    out = like_memory_format(nhwc, 7)
    assert out.shape == (2, 7, 4, 5) and out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()


def test_eval_batch_norm_of_one_value_per_channel_runs_on_every_backend(backend):
    """Only batch statistics over one value per channel are refused: eval batch norm with
    running statistics at batch 1 over a 1x1 map is nn.BatchNorm2d's eval, on every backend."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 1, 1, generator=gen)
    weight, bias = torch.rand(4, generator=gen) + 0.5, torch.randn(4, generator=gen)
    mean, var = torch.randn(4, generator=gen), torch.rand(4, generator=gen) + 0.5
    out = norm_act(x, weight, bias, mean.clone(), var.clone(), norm="batch", training=False,
                   activation="leaky_relu", slope=0.2)
    expected = torch.nn.functional.leaky_relu(torch.nn.functional.batch_norm(
        x.double(), mean.double(), var.double(), weight.double(), bias.double(), False), 0.2)
    assert_close(out, expected, FP32_SINGLE_OP, "eval batch norm 1x1")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        norm_act(x, weight, bias, mean.clone(), var.clone(), norm="batch", training=True)


# stand_ins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [torch.preserve_format, torch.channels_last],
                         ids=["as-is", "channels-last"])
def test_a_transposed_convolutions_stand_in_keeps_its_output_padding(layout):
    """A stand-in copies every setting its forward reads, output_padding included (a stride-2
    transposed convolution with output_padding=1 makes one more row and column)."""
    from fastp2p.ops.stand_ins import stand_in
    torch.manual_seed(3)
    up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expected = up(x)
        got = stand_in(up, up.weight, up.bias, layout)(x)
    assert got.shape == expected.shape == (2, 3, 10, 10)
    assert_close(got, expected, FP32_SINGLE_OP, "stand-in output")



def test_a_grouped_convolutions_stand_in_keeps_its_groups():
    """groups is one of the settings a stand-in copies (a depthwise or grouped layer's weight
    has in_channels / groups input channels)."""
    from fastp2p.ops.stand_ins import stand_in
    torch.manual_seed(11)
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        got = stand_in(conv, conv.weight, conv.bias, torch.channels_last)(x)
        assert_close(got, conv(x), FP32_SINGLE_OP, "grouped stand-in output")

# split_conv_backward ------------------------------------------------------------------------


def _split_grads(module, x, recorder=None):
    """(output, x.grad, bias.grad) of aligned_channels.conv2d(module, x), inside ``within``."""
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    with split_conv_backward.within(recorder):
        out = aligned_channels.conv2d(module, x)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(9)))
    return out.detach(), x.grad, module.bias.grad


def test_a_frozen_weight_with_a_trainable_bias_still_splits_and_asks_only_for_the_bias(
        monkeypatch):
    """The wgrad half is wanted for the bias alone: the node splits, its side-stream call asks
    for the bias gradient only (no weight gradient computed for a frozen weight), and the
    gradients are the plain call's bits."""
    from helpers.stream_recorders import RecordingWgradStreams
    torch.manual_seed(4)
    module = nn.Conv2d(4, 8, 4, 2, 1)
    module.weight.requires_grad_(False)
    x = torch.randn(2, 4, 8, 8)
    expected = _split_grads(module, x)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    got = _split_grads(module, x, recorder)
    # (the join count is aten's: on CPUs convolution_backward hands back a weight-shaped
    # tensor even where its mask bit is off, which autograd then drops)
    assert recorder.log[:3] == ["fork", "backward --x on side", "backward x-- on main"]
    assert len(recorder.log) == 4 and recorder.log[3].startswith("join")
    assert module.weight.grad is None
    for ours, theirs in zip(got, expected, strict=True):
        assert torch.equal(ours, theirs)


def test_streams_of_another_device_leave_the_convolution_plain(monkeypatch):
    """The Function is used only on the streams' device: a CPU convolution inside ``within``
    with a CUDA device's streams runs the plain call, with no fork."""
    from helpers.stream_recorders import RecordingWgradStreams

    class OtherDevice(RecordingWgradStreams):
        device = torch.device("cuda", 0)

    recorder = OtherDevice().watch(monkeypatch)
    module = nn.Conv2d(4, 8, 4, 2, 1)
    x = torch.randn(1, 4, 8, 8).requires_grad_()
    with split_conv_backward.within(recorder):
        assert not split_conv_backward.module_applies(module, x)
        out = aligned_channels.conv2d(module, x)
        assert out.grad_fn.name() == "ConvolutionBackward0"
        plain = split_conv_backward.conv2d(x, module.weight, module.bias, 2, 1, 1)
        assert plain.grad_fn.name() == "ConvolutionBackward0"
    out.sum().backward()
    assert recorder.log == []


def test_a_split_transposed_convolution_keeps_its_output_padding(monkeypatch):
    """module_convolution passes a transposed convolution's output_padding on: same output
    shape, values and gradients as the module's own call."""
    from helpers.stream_recorders import SPLIT_NODE, RecordingWgradStreams
    torch.manual_seed(6)
    up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(2, 4, 5, 5)
    grad = torch.randn(2, 3, 10, 10)
    x_ref = x.clone().requires_grad_()
    expected = up(x_ref)
    expected_grads = torch.autograd.grad(expected, [x_ref, up.weight, up.bias], grad)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    x_ours = x.clone().requires_grad_()
    with split_conv_backward.within(recorder):
        assert split_conv_backward.module_applies(up, x_ours)
        got = split_conv_backward.module_convolution(up, x_ours)
    assert got.shape == expected.shape == (2, 3, 10, 10)
    got_grads = torch.autograd.grad(got, [x_ours, up.weight, up.bias], grad)
    assert recorder.log == SPLIT_NODE
    assert_close(got, expected, FP32_SINGLE_OP, "output")
    for name, ours, theirs in zip(["x", "weight", "bias"], got_grads, expected_grads):
        assert_close(ours, theirs, FP32_SINGLE_OP, f"grad {name}")


def test_float64_under_autocast_splits_in_float64_as_the_plain_call(monkeypatch):
    """Autocast leaves float64 convolutions alone; so does the split Function's cast: a
    float64 layer under CPU bf16 autocast gives the plain call's float64 values."""
    from helpers.stream_recorders import SPLIT_NODE, RecordingWgradStreams
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64)
    weight = torch.randn(8, 4, 4, 4, generator=gen, dtype=torch.float64)
    bias = torch.randn(8, generator=gen, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.nn.functional.conv2d(x, weight, bias, 2, 1)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    with split_conv_backward.within(recorder), torch.autocast("cpu", dtype=torch.bfloat16):
        got = split_conv_backward.conv2d(*leaves, (2, 2), (1, 1), (1, 1))
    got.sum().backward()
    assert recorder.log == SPLIT_NODE
    assert expected.dtype == got.dtype == torch.float64
    assert all(t.grad.dtype == torch.float64 for t in leaves)
    assert_close(got, expected, 1e-12, "float64 output")



def test_nested_within_blocks_restore_the_outer_streams():
    """``within`` restores the setting it found, not None: an inner block (another recorder,
    or None) hands the outer block's streams back when it ends."""
    from helpers.stream_recorders import RecordingWgradStreams
    outer, inner = RecordingWgradStreams(), RecordingWgradStreams()
    with split_conv_backward.within(outer):
        with split_conv_backward.within(inner):
            assert split_conv_backward._active is inner
        assert split_conv_backward._active is outer
        with split_conv_backward.within(None):
            assert split_conv_backward._active is None
        assert split_conv_backward._active is outer
    assert split_conv_backward._active is None


def test_a_string_padding_leaves_the_convolution_to_the_module(monkeypatch):
    """``padding="same"`` (a string the Function's aten call cannot take) runs the module's
    own call inside ``within``: no fork, the module's values and gradients."""
    from helpers.stream_recorders import RecordingWgradStreams
    torch.manual_seed(10)
    module = nn.Conv2d(4, 8, 3, padding="same")
    x = torch.randn(1, 4, 6, 6).requires_grad_()
    recorder = RecordingWgradStreams().watch(monkeypatch)
    with split_conv_backward.within(recorder):
        assert not split_conv_backward.module_applies(module, x)
        out = aligned_channels.conv2d(module, x)
    out.sum().backward()
    assert recorder.log == [] and out.shape == (1, 8, 6, 6)
    assert_close(out, module(x), FP32_SINGLE_OP, "same-padded output")

# step_losses --------------------------------------------------------------------------------


def test_g_step_losses_refuses_a_bool_lambda():
    """lambda_l1 is a number; True (an int subclass) is refused like any non-number."""
    from fastp2p.ops.step_losses import g_step_losses, g_step_losses_and_grads
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 1, 3, 3, generator=gen)
    fake_b, real_b = torch.randn(1, 3, 4, 4, generator=gen), torch.randn(1, 3, 4, 4, generator=gen)
    for call in (g_step_losses, g_step_losses_and_grads):
        with pytest.raises(ValueError, match="lambda_l1 must be a number"):
            call(logits, fake_b, real_b, "vanilla", True)
    assert g_step_losses(logits, fake_b, real_b, "vanilla", 1).shape == (3,)


@pytest.mark.parametrize("backend", [p for p in CPU_BACKEND_PARAMS
                                     if getattr(p, "values", (p,))[0] != "cpp"], indirect=True)
def test_float16_logits_keep_a_loss_scaled_gradient(backend):
    """float16 logits are computed as float32 and autograd scales the float32 gradient by the
    loss scale before casting it back: with 2^16 logits (gradients ~1/numel, fp16 subnormals)
    and a 2^16 loss scale the float16 gradient is as good as storing the exact one in float16."""
    from fastp2p.ops.step_losses import d_step_losses
    from helpers.tolerances import assert_storage_close
    gen = torch.Generator().manual_seed(7)
    fake64, real64 = (torch.randn(1, 1, 256, 256, generator=gen).half().double() for _ in "fr")
    refs = [t.clone().requires_grad_() for t in (fake64, real64)]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = 0.5 * (bce(refs[0], torch.zeros_like(fake64))
                      + bce(refs[1], torch.ones_like(real64)))
    scale = 2.0 ** 16
    (expected * scale).backward()
    fake, real = (t.half().requires_grad_() for t in (fake64, real64))
    (d_step_losses(fake, real, "vanilla")[0] * scale).backward()
    assert fake.grad.dtype == real.grad.dtype == torch.float16
    assert_storage_close(fake.grad, refs[0].grad, "scaled grad fake")
    assert_storage_close(real.grad, refs[1].grad, "scaled grad real")
