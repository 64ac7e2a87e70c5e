"""The fused forward of the public networks, over the reference module trees (same parameters).

Convolutions stay the modules' own (cuDNN / oneDNN, in the input's memory format), except in
CPU float32 inference (below: cached copies of the weights, packed for oneDNN or, for a
transposed convolution measured faster so, run as GEMM + C++ col2im, ``fastp2p.ops
.conv_transpose``) and, on GPUs, the image-side layers with 3 or 6 channels, which run with
their channels zero-padded to 8 (``fastp2p.ops.aligned_channels``); every norm +
activation (+ dropout, + skip concatenation) goes through ``fastp2p.ops``. Data-flow facts
used by the U-Net (checked against the reference): the skip that a block concatenates is
LeakyReLU(x) (the in-place LeakyReLU), and every concatenation is consumed first by the
enclosing block's ReLU (so, for a slope >= 0, either is relu(x)), so the decoder reads
``cat([relu(x), relu(dropout(norm(up)))])`` — built by ``norm_act_concat`` straight into one
buffer. Dropout uses the counter-based mask (``fastp2p.ops.dropout_rng``), drawn from the
module's ``dropout_rng`` buffer ([seed, offset], int64, not saved in the state_dict), whose
offset advances by the dropped elements after every training forward. When no gradient is
wanted, an eval-mode BatchNorm is folded into the convolution before it (``conv_norm``,
fastp2p.nn.folding) and its fused op runs with norm "none" (bias + activation only); on CPUs a
U-Net layer with nothing left of its norm then runs torch's in-place activation instead, the
cheaper call for the same bits (``fastp2p.ops.activations_in_torch``: not where
FASTP2P_BACKEND forces a backend), and the decoder's concatenation is written half by
``clamp_min`` of the skip and half by the transposed convolution itself
(``conv_transpose2d_into``). CPU float32 U-Net inference computes channels-last whatever the
input's and the module's layout, with cached copies of the weights packed for oneDNN (for a
transposed convolution: packed, as its four phases, or channels-last for the GEMM form,
whichever was measured faster: ``weight_layouts``). The U-Net returns its
output in the memory format the reference returns (``unet_output``), the discriminators too
(``sequential_output``). Layers the conv choice
gives to the fused convolution run through fastp2p.nn.unet_conv / fused_conv instead. What a
network's tree holds (its layers, hook dicts, norm-like modules) is listed once per tree and
listed again after a registration (fastp2p.nn.layer_walk); what may change without one is asked
per call (``_fused_forward_fits``).
"""
import itertools
from operator import attrgetter

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.modules.module as _module_hooks
from torch._C._functorch import maybe_current_level as _functorch_level
from torch.autograd import forward_ad
from torch.nn.parallel import DistributedDataParallel

from fastp2p.fork_safe import ForkSafeLock
from fastp2p.nn.batch_statistics import (fused_ops_reproduce, updates_running_stats,
                                         uses_running_stats)
from fastp2p.nn.checks import int_in_range
from fastp2p.nn.folding import can_fold, conv_in_layout, folded_conv, gradient_wanted
from fastp2p.nn.layer_walk import (REPRODUCED_LAYERS, Walk, backward_hook_dicts, cached_walk,
                                   conv_parameters_in_place, forward_hook_dicts)
from fastp2p.nn.tracing import compiler_tracing
from fastp2p.nn.output_format import (CONTIGUOUS, conv_output_format, in_memory_format,
                                      returns_nchw, sequential_output_format,
                                      suggested_memory_format)
from fastp2p.ops import activations_in_torch, norm_act, norm_act_concat, onednn_packed
from fastp2p.ops.aligned_channels import conv2d
from fastp2p.ops.conv_transpose import (LAYOUT_OF_FORM, conv_transpose2d, conv_transpose2d_into,
                                        conv_transpose2d_tanh, cpu_inference_form)
from fastp2p.ops.stand_ins import PACKED
from fastp2p.ops.definitions import like_memory_format
from fastp2p.ops.dropout_rng import LOW32, mix32
from fastp2p.reference.unet import UnetSkipConnectionBlock

# The name that pickles made before e2d97a1 give a network's cached walk: they still load.
_Walk = Walk
_DIRECT_NORMS = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.Identity)
_NO_NORM = dict(norm="none")


def norm_supported(module: nn.Module) -> bool:
    """Whether the fused path reproduces this norm module exactly (any other type: no). The
    fused ops take an affine pair or none: a norm left with only one of weight and bias (one set
    to None after construction; torch's norms take that) keeps the reference forward."""
    if type(module) is nn.Identity:
        return True
    params = module._parameters
    if (params.get("weight") is None) != (params.get("bias") is None):
        return False
    if type(module) is nn.BatchNorm2d:
        return fused_ops_reproduce(module)
    if type(module) is nn.InstanceNorm2d:  # (and no running buffers: Walk.instance_stats)
        return not module.track_running_stats
    return False


def norm_kwargs(module: nn.Module) -> dict:
    """Arguments of ``norm_act`` that reproduce ``module`` (a ``norm_supported`` one), with
    torch's choice of statistics (fastp2p.nn.batch_statistics: an eval BatchNorm normalizes with
    its running statistics whenever it has them, even with track_running_stats set to False
    after construction) and batch count: a BatchNorm that updates its running statistics hands
    its num_batches_tracked to the op, which adds 1 to it (the Triton kernel that updates the
    running statistics does, with no launch of its own). (Tensors read from the module's dicts:
    nn.Module's __getattr__ costs about a microsecond per lookup, and this runs per layer per
    forward.)"""
    if type(module) is nn.Identity:
        return dict(norm="none")
    params, buffers = module._parameters, module._buffers
    kwargs = dict(weight=params.get("weight"), bias=params.get("bias"), eps=module.eps)
    if type(module) is nn.InstanceNorm2d:
        return dict(kwargs, norm="instance")
    updates, running = updates_running_stats(module), uses_running_stats(module)
    passed = updates or running  # torch hands the buffers over for these two only
    return dict(kwargs, norm="batch", training=not running, momentum=module.momentum or 0.0,
                running_mean=buffers.get("running_mean") if passed else None,
                running_var=buffers.get("running_var") if passed else None,
                num_batches_tracked=buffers.get("num_batches_tracked") if updates else None)


class DropoutRNG:
    """Hands out (seed, offset) per dropout layer of one forward (device ops only: no host
    sync). Each ``take`` reserves its elements as it hands them out: it reads the module's
    offset and advances it past them under one lock, so forwards that threads sharing one
    network run at once (a web server's) draw disjoint ranges, hence different masks (reading
    the offset as a forward began and adding its draws as it ended gave them the same masks).
    The lock is taken per dropout layer, not per forward: a forward's total is known only at
    its end, and holding the lock from its first draw to its end would serialise the threads'
    decoders (and stay held for good after an error in between)."""

    # one for every network: held only for a read and an add of one element
    _reserving = ForkSafeLock()

    def __init__(self, state: torch.Tensor):
        self.state = state

    def take(self, numel: int):
        with self._reserving, torch.no_grad():
            offset = self.state[1].clone()
            self.state[1].add_(numel)
        return self.state[0], offset


# How many U-Nets this process has built: each takes its own default dropout seed from it.
_unets_built = itertools.count()
_counting = ForkSafeLock()


def default_dropout_seed() -> int:
    """The next U-Net's default dropout seed: torch.initial_seed() for the first U-Net a process
    builds (the stream every run and test pinned on it draws), then that seed plus a hash of the
    count of U-Nets built before (fastp2p.kernels.dropout_rng's mix32, 0 for the first), so that
    separately built U-Nets (CycleGAN's two generators, an ensemble) draw independent masks, as
    reference U-Nets drawing from torch's generator do. Nothing is drawn from the global RNG
    (the reference's construction and init streams are unchanged); the count is taken under a
    lock, so threads building U-Nets at once get different seeds. A hash, not the count itself:
    a rank's seed is the seed plus the rank (fastp2p.train.distributed), so a plain count would
    give rank 0's second U-Net rank 1's first stream."""
    with _counting:
        built_before = next(_unets_built)
    return (torch.initial_seed() + mix32(built_before)) & LOW32


def init_dropout_rng(module: nn.Module, device=None) -> None:
    """Register the [seed, offset] buffer, on ``device`` (None: torch's default device, as for
    the parameters), seed ``default_dropout_seed()``, offset 0. A module built on the meta
    device keeps the seed its construction took when it is materialised (this is called again
    then: fastp2p.nn.compat). A normal tensor even inside
    ``torch.inference_mode()``: a training forward advances it in place, also outside that
    mode (a module built inside it may train or sample with dropout later). DDP is told to
    leave the buffer alone where the module is the one it wraps: its ``broadcast_buffers``
    copies rank 0's buffers to every rank before each forward, which would give every rank
    rank 0's masks (the reference's Dropout draws each rank's from that rank's generator);
    the names the module already had DDP ignore are kept."""
    seed = getattr(module, "_constructed_dropout_seed", None)
    if seed is None:
        seed = module._constructed_dropout_seed = default_dropout_seed()
    with torch.inference_mode(False):
        state = torch.tensor([seed, 0], dtype=torch.int64, device=device)
    module.register_buffer("dropout_rng", state, persistent=False)
    ignored = list(getattr(module, "_ddp_params_and_buffers_to_ignore", ()))
    if "dropout_rng" not in ignored:
        ignored.append("dropout_rng")
    # (it also marks the buffer itself: DDP's mixed precision then leaves the int64 state uncast)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)


def set_dropout_rng(module: nn.Module, seed: int, offset: int = 0) -> None:
    """Position ``module``'s counter-based dropout stream (its ``dropout_rng`` buffer) at
    (seed, offset). ``seed``: an int in [0, 2**64), as torch.manual_seed takes; the kernels
    hash its low 32 bits (fastp2p.kernels.dropout_rng), which the buffer keeps. ``offset``: an
    int in [0, 2**63), the buffer's int64 count of the elements drawn so far (the kernels add
    it modulo 2**32). Anything else (a float, a bool, a negative value) is refused with a
    ValueError. Not read where the reference forward runs (torch.compile, torch.export,
    torch.fx, torch.jit.trace): dropout there draws from torch's generator."""
    seed = int_in_range("set_dropout_rng: seed", seed, 0, 2 ** 64, "2**64",
                        " (the kernels use its low 32 bits)") & LOW32
    offset = int_in_range("set_dropout_rng: offset", offset, 0, 2 ** 63, "2**63",
                          " (an int64 count of the elements drawn)")
    with torch.no_grad():
        module.dropout_rng.copy_(torch.tensor([seed, offset], dtype=torch.int64))


def reference_forward_wanted(input) -> bool:
    """Whether a call with ``input`` must run the network's reference forward whatever its
    layers: an empty batch (which the fused ops do not take; torch returns an empty output, and
    a training BatchNorm still counts the batch), a ``torch.jit.trace`` (it records torch ops,
    not fastp2p's C++ calls and Triton launches), a ``torch.func`` transform (vmap, grad, jvp,
    ...: the fused ops have no batching rule) and forward-mode AD (inside
    ``torch.autograd.forward_ad.dual_level``: the fused ops' autograd Functions define no jvp),
    and a tensor on the meta device (shape and FLOP counting: the kernels have no meta form).
    Under torch.compile only the batch is asked (the compiled code traces the rest)."""
    if torch.compiler.is_compiling():
        return not input.numel() or input.is_meta
    # torch._C._is_tracing: torch.jit.is_tracing() without its TorchScript check, a third of the
    # time; asked first: jit.trace records the element count as a tensor and warns when it is
    # made a bool. forward_ad._current_level: torch's module global, -1 outside dual_level.
    return (torch._C._is_tracing() or not input.numel() or input.is_meta
            or _functorch_level() is not None or forward_ad._current_level >= 0)


def module_layout(conv: nn.Module, x: torch.Tensor):
    """Every convolution with the module's own weight."""
    return torch.preserve_format


def channels_last_layout(conv: nn.Module, x: torch.Tensor):
    """Every convolution with a channels-last weight."""
    return torch.channels_last


def cpu_inference_layout(conv: nn.Module, x: torch.Tensor):
    """CPU float32 inference: the weight packed for oneDNN (fastp2p.ops.onednn_packed: no
    reorder per call); for a transposed convolution, the layout of the form measured fastest
    (``fastp2p.ops.conv_transpose.cpu_inference_form``: packed, its four phases' packed
    convolution, or channels-last for the GEMM form); channels-last where oneDNN's packed ops
    are missing."""
    if isinstance(conv, nn.ConvTranspose2d):
        return LAYOUT_OF_FORM.get(cpu_inference_form(conv, x), torch.channels_last)
    return PACKED if onednn_packed.applies(conv, x) else torch.channels_last


def weight_layouts(input, inference: bool):
    """How a U-Net forward lays out its convolutions' weights, as a function of (conv, its
    input). For float32 inference on a CPU, the input is computed channels-last whatever the
    layouts of the input and the module (oneDNN is faster so, and reorders a weight that is not
    packed on every call: benchmarks/NOTES.md, "CPU inference: NCHW input computed
    channels-last" and "CPU inference with packed oneDNN weights"): ``cpu_inference_layout``,
    or under CPU autocast (which the packed ops would bypass) ``channels_last_layout``.
    Elsewhere, and under torch.compile or torch.export (whose tracing the copies' cache would
    break: one recompiled frame per layer, or a data_ptr it cannot trace), ``module_layout``."""
    if not (inference and input.is_cpu and input.dtype == torch.float32
            and not compiler_tracing()):
        return module_layout
    if torch.is_autocast_enabled("cpu"):
        return channels_last_layout
    return cpu_inference_layout


def laid_out(conv: nn.Module, x: torch.Tensor, weights) -> nn.Module:
    """``conv`` with its weight in the layout ``weights`` (a ``weight_layouts`` function) gives
    it for input ``x``."""
    return conv_in_layout(conv, weights(conv, x), x.shape)


def conv_to_run(conv, norm, x, fold: bool, weights=module_layout):
    """(the module to run as ``conv`` on ``x``, the ``norm_act`` arguments for what of ``norm``
    remains): with ``fold`` (no gradient wanted) an eval-mode BatchNorm is folded into the
    convolution (fastp2p.nn.folding) and nothing remains of it but the bias the convolution
    adds. ``weights``: a ``weight_layouts`` function (module_layout: the module's own weights;
    another: cached copies)."""
    layout = weights(conv, x)
    folded = folded_conv(conv, norm, layout, x.shape) if fold and can_fold(conv, norm) else None
    if folded is not None:
        return folded, dict(norm="none")
    return conv_in_layout(conv, layout, x.shape), norm_kwargs(norm)


def conv_norm(conv_fn, conv, norm, x, fold: bool, weights=module_layout):
    """``conv_fn(conv, x)`` and the ``norm_act`` arguments for what of ``norm`` remains
    (``conv_to_run``)."""
    module, kwargs = conv_to_run(conv, norm, x, fold, weights)
    return conv_fn(module, x), kwargs


def _activation(x, norm: dict, in_torch: bool, activation: str, slope: float = 0.0):
    """``norm_act(x, activation=activation, slope=slope, **norm)``; where nothing remains of the
    norm and ``in_torch`` (``fastp2p.ops.activations_in_torch``: the forward's), torch's in-place
    activation instead."""
    if in_torch and norm == _NO_NORM:
        return F.leaky_relu_(x, slope) if activation == "leaky_relu" else x.relu_()
    return norm_act(x, activation=activation, slope=slope, **norm)


def _relu_concat(skip, up, norm: dict, dropout_p: float, rng: "DropoutRNG"):
    """``cat([relu(skip), relu(dropout(norm(up)))], 1)`` in up's memory format."""
    seed, offset = rng.take(up.numel()) if dropout_p > 0 else (0, 0)
    return norm_act_concat(skip, up, activation="relu", dropout_p=dropout_p, seed=seed,
                           offset=offset, **norm)


def _relu_concat_written(skip, conv, x):
    """``cat([relu(skip), relu(conv(x))], 1)`` in skip's memory format, each half written by
    one torch op (a CPU inference layer with nothing left of its norm): the transposed
    convolution's output goes straight into its half (the phases' interleave writes it there:
    fastp2p.ops.conv_transpose.conv_transpose2d_into). A transposed convolution whose settings
    were changed so that its output no longer matches the skip is refused, as the reference's
    torch.cat refuses it (its writer would otherwise resize a view and leave the buffer's half
    unwritten)."""
    size = transposed_output_size(conv, x)
    if size != tuple(skip.shape[2:]):
        raise ValueError(f"U-Net skip concatenation: the skip is {tuple(skip.shape[2:])} but the "
                         f"transposed convolution makes {size} (a layer's stride, padding, "
                         "dilation or output_padding changed after construction?)")
    channels = skip.shape[1]
    out = like_memory_format(skip, channels + conv.out_channels)
    torch.clamp_min(skip, 0, out=out[:, :channels])
    conv_transpose2d_into(conv, x, out[:, channels:], "relu")
    return out


def transposed_output_size(conv: nn.ConvTranspose2d, x: torch.Tensor) -> tuple:
    """(height, width) of ``conv(x)`` (torch's formula for ConvTranspose2d)."""
    return tuple((x.shape[2 + i] - 1) * conv.stride[i] - 2 * conv.padding[i]
                 + conv.dilation[i] * (conv.kernel_size[i] - 1) + conv.output_padding[i] + 1
                 for i in range(2))


def _unet_level(block, skip, rng: DropoutRNG, inference: bool, in_torch: bool, weights):
    """A non-outermost U-Net level. ``skip`` = LeakyReLU(x) of the level's input x; returns
    relu(cat([x, up])), the buffer the parent's transposed conv reads. ``inference``: no
    gradient is wanted (eval BatchNorm is then folded into the convolution before it);
    ``in_torch``: inference whose layers that are only an activation run torch's ops
    (``fastp2p.ops.activations_in_torch``); ``weights``: a ``weight_layouts`` function
    (``conv_norm``)."""
    m = block.model
    innermost = isinstance(m[3], nn.ConvTranspose2d)
    if innermost:
        inner = _activation(conv2d(laid_out(m[1], skip, weights), skip), _NO_NORM, in_torch,
                            "relu")
        up_conv, up_norm = conv_to_run(m[3], m[4], inner, inference, weights)
        dropout = None
    else:
        down, down_norm = conv_norm(conv2d, m[1], m[2], skip, inference, weights)
        child = m[3]  # its LeakyReLU, child.model[0], applies to this level's down output
        child_skip = _activation(down, down_norm, in_torch, "leaky_relu",
                                 child.model[0].negative_slope)
        inner = _unet_level(child, child_skip, rng, inference, in_torch, weights)
        up_conv, up_norm = conv_to_run(m[5], m[6], inner, inference, weights)
        dropout = m[7] if len(m) > 7 else None
    p = dropout.p if dropout is not None and dropout.training else 0.0
    if in_torch and up_norm == _NO_NORM and p == 0:
        return _relu_concat_written(skip, up_conv, inner)
    return _relu_concat(skip, conv_transpose2d(up_conv, inner), up_norm, p, rng)


def _fused_forward_fits(walk: Walk) -> bool:
    """Whether the fused forward reproduces the walked tree's own forward: plain weights, each
    convolution's weight and bias still in its parameter dict (``conv_parameters_in_place``);
    no forward hook on a submodule, nor a global one (the fused forwards call no submodule, so
    a hook, e.g. a feature-matching loss's forward hook on an inner layer, would silently not
    fire), and, where a gradient may be wanted, no backward hook either; every norm layer
    reproduced (``norm_supported``), and no InstanceNorm holding running buffers
    (``Walk.instance_stats``). Hooks, norms and the convolutions' parameters are asked on
    every call, so a hook added, a train/eval switch, a changed setting or a replaced weight
    shows at once."""
    if _module_hooks._global_forward_hooks or _module_hooks._global_forward_pre_hooks:
        return False
    if torch.is_grad_enabled() and (  # without a gradient, no backward hook would fire
            _module_hooks._global_backward_hooks or _module_hooks._global_backward_pre_hooks
            or any(walk.backward_hook_dicts)):
        return False
    return (walk.plain_weights and conv_parameters_in_place(walk.conv_parameters)
            and not walk.instance_stats and not any(walk.hook_dicts)
            and all(map(norm_supported, walk.norms)))


def unet_supported(unet) -> bool:
    """Whether the fused forward reproduces ``unet``'s own (``_fused_forward_fits``; the U-Net's
    own hooks run as usual: its __call__ runs the fused forward): every layer where and what
    the fused forward reads it as (``_unet_layers``) and no LeakyReLU with a negative slope
    (the fused forwards take relu(leaky_relu(x)) of a skip for relu(x), as the in-place
    LeakyReLU makes it for a slope >= 0; the slopes are read per call: a changed attribute
    registers nothing), and no Dropout with p >= 1 (the fused ops drop with p < 1; torch's
    dropout zeroes everything at p = 1 and refuses p > 1; read per call too). The layers are
    listed by ``cached_walk``. (Deleting a submodule is not watched: the U-Net forward reads its
    layers by position and would not run without it.)"""
    walk = cached_walk(unet, _unet_layers)
    return (walk.layers_fit and _fused_forward_fits(walk)
            and (not walk.leaky_relus or min(map(_slope, walk.leaky_relus)) >= 0)
            and (not walk.dropouts or max(map(_dropout_p, walk.dropouts)) < 1))


# (map + attrgetter: a third of a generator's host time)
_slope, _dropout_p = attrgetter("negative_slope"), attrgetter("p")



# What the fused U-Net forwards read at each position of a level's ``model``
# (fastp2p.reference.unet.UnetSkipConnectionBlock): exactly these types, a norm (any norm-like
# module: ``norm_supported`` decides per call) or the next level.
_NORM, _LEVEL = "norm", "level"
_OUTERMOST = (nn.Conv2d, _LEVEL, nn.ReLU, nn.ConvTranspose2d, nn.Tanh)
_INNERMOST = (nn.LeakyReLU, nn.Conv2d, nn.ReLU, nn.ConvTranspose2d, _NORM)
_MIDDLE = (nn.LeakyReLU, nn.Conv2d, _NORM, _LEVEL, nn.ReLU, nn.ConvTranspose2d, _NORM)
_INNER_SHAPES = (_MIDDLE, _MIDDLE + (nn.Dropout,), _INNERMOST)


def _fits(layer: nn.Module, expected) -> bool:
    if expected is _NORM:  # norm-like, so that the walk lists it for ``norm_supported``
        return type(layer) not in REPRODUCED_LAYERS
    if expected is _LEVEL:
        return type(layer) is UnetSkipConnectionBlock
    return type(layer) is expected


def _unet_layers(unet) -> tuple:
    """(whether every level of ``unet`` holds the layers the fused forwards read, by position
    and exact type (an activation replaced, e.g. the output's Tanh by an Identity or a ReLU by a
    SiLU, or a layer appended: no), its LeakyReLUs, ``Walk.output_path`` and its Dropouts)."""
    leaky_relus, dropouts, block, shapes, levels = [], [], unet.model, (_OUTERMOST,), []
    while True:
        if type(block) is not UnetSkipConnectionBlock or type(block.model) is not nn.Sequential:
            return False, (), (), ()
        layers = tuple(block.model)
        shape = next((s for s in shapes if len(s) == len(layers)
                      and all(map(_fits, layers, s))), None)
        if shape is None or block.outermost != (shape is _OUTERMOST):
            return False, (), (), ()
        leaky_relus += [m for m in layers if type(m) is nn.LeakyReLU]
        dropouts += [m for m in layers if type(m) is nn.Dropout]
        levels.append(layers)
        if shape is _INNERMOST:
            outer, second = levels[0], levels[1]
            return (True, tuple(leaky_relus),
                    (outer[0], outer[3], _ends_in_nchw_norm(second)), tuple(dropouts))
        block, shapes = layers[1 if shape is _OUTERMOST else 3], _INNER_SHAPES  # the _LEVEL


def unet_forward(unet, input):
    outer = unet.model.model  # [down conv, submodule, ReLU, up conv, Tanh]
    rng = DropoutRNG(unet.dropout_rng)
    inference = not gradient_wanted(unet, input)
    in_torch = inference and activations_in_torch(input)
    weights = weight_layouts(input, inference)
    x = input if weights is module_layout else input.contiguous(memory_format=torch.channels_last)
    skip = _activation(conv2d(laid_out(outer[0], x, weights), x), _NO_NORM, in_torch,
                       "leaky_relu", outer[1].model[0].negative_slope)
    inner = _unet_level(outer[1], skip, rng, inference, in_torch, weights)
    return conv_transpose2d_tanh(laid_out(outer[3], inner, weights), inner)


def unet_output(unet, input, out):
    """The U-Net's output ``out`` in the memory format, strides included, that the reference
    module returns for ``input`` (fastp2p.nn.output_format): CPU inference, the CPU decoder's
    GEMM form and the fused convolution write channels-last whatever the input's layout, and
    the fused norms keep their input's format where InstanceNorm returns NCHW. Channels-last
    from the input or the first convolution's weight carries through every level to the output
    unless the second level's output passes a norm that returns NCHW last (``returns_nchw``:
    then the outermost concatenation is NCHW); the last convolution's weight makes the output
    channels-last either way."""
    first, last, nchw_concatenation = cached_walk(unet, _unet_layers).output_path
    if nchw_concatenation:
        concatenation = CONTIGUOUS
    else:
        concatenation = conv_output_format(suggested_memory_format(input), first)
    memory_format = conv_output_format(concatenation, last)
    if out.shape[1] == 1:
        # One channel is dense in both formats; torch.tanh, the reference's last op, then
        # writes NCHW strides.
        memory_format = CONTIGUOUS
    return in_memory_format(out, memory_format)


def _ends_in_nchw_norm(level_layers: tuple) -> bool:
    """Whether a U-Net level's output passes a norm that returns NCHW (``returns_nchw``) after
    its up convolution (its up norm sits at index 4 or later in every level's layers)."""
    return any(map(returns_nchw, level_layers[4:]))


def sequential_output(seq: nn.Sequential, input, out):
    """A discriminator stack's output ``out`` in the memory format, strides included, that the
    reference forward of ``seq`` returns for ``input``."""
    return in_memory_format(out, sequential_output_format(seq, input))


def sequential_supported(seq: nn.Sequential) -> bool:
    """Whether ``sequential_forward`` reproduces the discriminator stack ``seq`` (the network's
    ``model`` or ``net``, so ``seq``'s own hooks would not run either): only convolutions,
    LeakyReLUs and fused norms, and ``_fused_forward_fits``."""
    if any(forward_hook_dicts(seq)) or (torch.is_grad_enabled() and any(backward_hook_dicts(seq))):
        return False
    if not _fused_forward_fits(cached_walk(seq)):
        return False
    return all(isinstance(m, (nn.Conv2d, nn.LeakyReLU))
               or (isinstance(m, _DIRECT_NORMS) and norm_supported(m)) for m in seq)


def sequential_forward(seq: nn.Sequential, x):
    """Discriminator stacks: conv, then [norm] + LeakyReLU fused into one norm_act (an eval
    BatchNorm folded into the conv when no gradient is wanted)."""
    layers, i = list(seq), 0
    fold = not gradient_wanted(seq, x)
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d):
            following = layers[i + 1] if i + 1 < len(layers) else None
            if not isinstance(following, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                x, i = conv2d(layer, x), i + 1
                continue
            x, norm = conv_norm(conv2d, layer, following, x, fold)
            i += 2
        elif isinstance(layer, nn.LeakyReLU):  # a LeakyReLU straight after a conv: no norm
            norm = dict(norm="none")
        else:
            norm, i = norm_kwargs(layer), i + 1
        act = dict(activation="none")
        if i < len(layers) and isinstance(layers[i], nn.LeakyReLU):
            act, i = dict(activation="leaky_relu", slope=layers[i].negative_slope), i + 1
        x = norm_act(x, **norm, **act)
    return x
