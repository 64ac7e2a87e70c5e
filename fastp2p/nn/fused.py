"""The fused forward of the public networks, over the reference module trees (same parameters).

Convolutions stay the modules' own (cuDNN / oneDNN, in the input's memory format), except the
decoder's transposed convolutions in CPU float32 inference, which run as GEMM + C++ col2im
(``fastp2p.ops.conv_transpose``), and, on GPUs, the image-side layers with 3 or 6 channels, which
run with their channels zero-padded to 8 (``fastp2p.ops.aligned_channels``); every norm +
activation (+ dropout, + skip concatenation) goes through ``fastp2p.ops``. Data-flow facts
used by the U-Net (checked against the reference): the skip that a block concatenates is
LeakyReLU(x) (the in-place LeakyReLU), and every concatenation is consumed first by the
enclosing block's ReLU, so the decoder reads
``cat([relu(x), relu(dropout(norm(up)))])`` — built by ``norm_act_concat`` straight into one
buffer. Dropout uses the counter-based mask (``fastp2p.ops.dropout_rng``), drawn from the
module's ``dropout_rng`` buffer ([seed, offset], int64, not saved in the state_dict), whose
offset advances by the dropped elements after every training forward.
"""
import torch
import torch.nn as nn

from fastp2p.ops import norm_act, norm_act_concat
from fastp2p.ops.aligned_channels import conv2d
from fastp2p.ops.conv_transpose import conv_transpose2d

_DIRECT_NORMS = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.Identity)


def norm_supported(module: nn.Module) -> bool:
    """Whether the fused path reproduces this norm module exactly."""
    if type(module) is nn.Identity:
        return True
    if type(module) is nn.BatchNorm2d:
        return not (module.training and module.track_running_stats and module.momentum is None)
    if type(module) is nn.InstanceNorm2d:
        return not module.track_running_stats
    return False


def norm_kwargs(module: nn.Module) -> dict:
    """Arguments of ``norm_act`` that reproduce ``module``; counts BatchNorm's batches."""
    if type(module) is nn.Identity:
        return dict(norm="none")
    kwargs = dict(weight=module.weight, bias=module.bias, eps=module.eps)
    if type(module) is nn.InstanceNorm2d:
        return dict(kwargs, norm="instance")
    tracking = module.track_running_stats
    training = module.training or not tracking
    if module.training and tracking:
        with torch.no_grad():
            module.num_batches_tracked.add_(1)
    return dict(kwargs, norm="batch", training=training, momentum=module.momentum or 0.0,
                running_mean=module.running_mean if tracking else None,
                running_var=module.running_var if tracking else None)


class DropoutRNG:
    """Hands out (seed, offset) per dropout layer during one forward, then advances the
    module's offset by everything it handed out (device ops only: no host sync)."""

    def __init__(self, state: torch.Tensor):
        self.state, self.used = state, 0

    def take(self, numel: int):
        seed, offset = self.state[0], self.state[1] + self.used
        self.used += numel
        return seed, offset

    def advance(self):
        if self.used:
            with torch.no_grad():
                self.state[1].add_(self.used)


def init_dropout_rng(module: nn.Module) -> None:
    """Register the [seed, offset] buffer. The seed comes from torch.initial_seed() (no draw
    from the global RNG, so the reference's construction and init streams are unchanged)."""
    seed = torch.initial_seed() & 0xFFFFFFFF
    module.register_buffer("dropout_rng", torch.tensor([seed, 0], dtype=torch.int64),
                           persistent=False)


def set_dropout_rng(module: nn.Module, seed: int, offset: int = 0) -> None:
    with torch.no_grad():
        module.dropout_rng.copy_(torch.tensor([seed, offset], dtype=torch.int64))


def _unet_level(block, skip, rng: DropoutRNG):
    """A non-outermost U-Net level. ``skip`` = LeakyReLU(x) of the level's input x; returns
    relu(cat([x, up])), the buffer the parent's transposed conv reads."""
    m = block.model
    innermost = isinstance(m[3], nn.ConvTranspose2d)
    down = m[1](skip)
    if innermost:
        up = conv_transpose2d(m[3], norm_act(down, norm="none", activation="relu"))
        upnorm, dropout = m[4], None
    else:
        child_skip = norm_act(down, activation="leaky_relu", slope=m[0].negative_slope,
                              **norm_kwargs(m[2]))
        up = conv_transpose2d(m[5], _unet_level(m[3], child_skip, rng))
        upnorm, dropout = m[6], (m[7] if len(m) > 7 else None)
    p = dropout.p if dropout is not None and dropout.training else 0.0
    seed, offset = rng.take(up.numel()) if p > 0 else (0, 0)
    return norm_act_concat(skip, up, activation="relu", dropout_p=p, seed=seed, offset=offset,
                           **norm_kwargs(upnorm))


def unet_supported(unet) -> bool:
    return all(norm_supported(m) for m in unet.modules()
               if isinstance(m, (nn.modules.batchnorm._NormBase, nn.Identity)))


def unet_forward(unet, input):
    outer = unet.model.model  # [down conv, submodule, ReLU, up conv, Tanh]
    rng = DropoutRNG(unet.dropout_rng)
    down = conv2d(outer[0], input)
    skip = norm_act(down, norm="none", activation="leaky_relu",
                    slope=outer[1].model[0].negative_slope)
    out = torch.tanh(conv_transpose2d(outer[3], _unet_level(outer[1], skip, rng)))
    rng.advance()
    return out


def sequential_supported(seq: nn.Sequential) -> bool:
    for m in seq:
        if isinstance(m, (nn.Conv2d, nn.LeakyReLU)):
            continue
        if not (isinstance(m, _DIRECT_NORMS) and norm_supported(m)):
            return False
    return True


def sequential_forward(seq: nn.Sequential, x):
    """Discriminator stacks: conv, then [norm] + LeakyReLU fused into one norm_act."""
    layers, i = list(seq), 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d):
            x, i = conv2d(layer, x), i + 1
            continue
        if isinstance(layer, nn.LeakyReLU):  # a LeakyReLU straight after a conv: no norm
            norm = dict(norm="none")
        else:
            norm, i = norm_kwargs(layer), i + 1
        act = dict(activation="none")
        if i < len(layers) and isinstance(layers[i], nn.LeakyReLU):
            act, i = dict(activation="leaky_relu", slope=layers[i].negative_slope), i + 1
        x = norm_act(x, **norm, **act)
    return x
