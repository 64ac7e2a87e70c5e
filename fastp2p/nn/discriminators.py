"""fastp2p.PatchDiscriminator and fastp2p.PixelDiscriminator: drop-ins for the reference ones."""
import torch

from fastp2p.nn.checks import check_image_batch, positive_ints, whole_number
from fastp2p.nn.checkpoint import infer_patchgan_config, infer_pixelgan_config
from fastp2p.nn.compat import ReferenceCheckpointMixin
from fastp2p.nn.folding import ReleasesReplacedWeights, gradient_wanted
from fastp2p.nn.fused import (reference_forward_wanted, sequential_forward, sequential_output,
                              sequential_supported)
from fastp2p.nn.fused_conv import conv_stack_forward
from fastp2p.nn.norm import describe_norm_layer, resolve_norm_layer
from fastp2p.nn.tracing import RefusesScripting, fx_tracing
from fastp2p.ops.backends.conv_choice import may_fuse
from fastp2p.patchgan_sizes import patch_logits_size
from fastp2p.reference.discriminators import NLayerDiscriminator, PixelDiscriminator as _Pixel


def unbatched(input) -> bool:
    """A single (C, H, W) image, which torch's conv and instance-norm layers take as a batch of
    one and the reference discriminators therefore take (with BatchNorm they raise, as torch's
    BatchNorm2d does). The discriminators hand it to the reference forward: the fused ops work
    on batches, and a lone image is no case for speed."""
    return isinstance(input, torch.Tensor) and input.dim() == 3


class PatchDiscriminator(ReleasesReplacedWeights, RefusesScripting, ReferenceCheckpointMixin,
                         NLayerDiscriminator):
    """Drop-in replacement for the reference ``NLayerDiscriminator`` (PatchGAN); its norm +
    LeakyReLU pairs run as fused fastp2p.ops.norm_act (the reference forward for norm layers
    the fused op cannot reproduce, e.g. GroupNorm, for any layer but a Conv2d, a LeakyReLU or
    such a norm, for parametrized layers, a convolution whose weight or bias was replaced by a
    plain tensor or a buffer, forward hooks on inner modules and, where a gradient is wanted,
    backward hooks, and for calls the fused ops cannot serve: an empty batch, one
    unbatched (C, H, W) image, torch.jit.trace, torch.func transforms, forward-mode AD;
    BatchNorm picks its statistics as torch does); the layers that the conv choice gives to
    the fused convolution (fastp2p.ops.backends.conv_choice: none by default, all with
    FASTP2P_CONV=fused) run as fastp2p.ops.conv_norm_act instead (fastp2p.nn.fused_conv).
    Where no gradient is wanted, an eval BatchNorm is folded into the convolution before it,
    from cached weights rebuilt when a weight or statistic changes (fastp2p.nn.folding): an
    optimizer step or ``load_state_dict`` is seen, a write through ``.data`` is not, nor an
    in-place change of a tensor a parameter's ``.data`` was set to
    (``torch.nn.utils.vector_to_parameters`` sets each to a view of its vector): after one, call
    ``fastp2p.nn.folding.forget_cached_weights``. A layer with weights in shared memory
    (``share_memory()``) is not cached: another process's writes are seen."""

    def __init__(self, input_nc=6, ndf=64, n_layers=3, norm_layer=None, *, norm=None):
        input_nc, ndf = positive_ints(input_nc=input_nc, ndf=ndf)
        n_layers = whole_number("n_layers", n_layers, 0)
        factory = resolve_norm_layer(norm, norm_layer)
        super().__init__(input_nc, ndf, n_layers, factory)
        # the factory's description, not the factory: as UNet, so that a lambda pickles
        self.input_nc, self.ndf, self.n_layers = input_nc, ndf, n_layers
        self.norm = describe_norm_layer(factory)

    def config(self) -> dict:
        return {"input_nc": self.input_nc, "ndf": self.ndf, "n_layers": self.n_layers,
                "norm": self.norm}

    _infer_config = staticmethod(infer_patchgan_config)

    def forward(self, input):
        if fx_tracing():
            return super().forward(input)
        check_image_batch(input[None] if unbatched(input) else input,
                          expected_channels=self.input_nc, module=self, name="PatchDiscriminator")
        # (not while torch.jit.trace records the sizes as tensors, as in check_image_batch: a
        # TracerWarning per comparison; the traced convolutions refuse a too small input)
        if (torch._C._get_tracing_state() is None
                and patch_logits_size(min(input.shape[-2:]), self.n_layers) < 1):
            raise ValueError(f"PatchDiscriminator with n_layers={self.n_layers} needs inputs "
                             f"large enough for a 1x1 logit map; {tuple(input.shape[-2:])} is "
                             "too small (use a larger image or fewer layers)")
        if (unbatched(input) or reference_forward_wanted(input)
                or not sequential_supported(self.model)):
            return super().forward(input)
        forward = (conv_stack_forward if may_fuse(input, gradient_wanted(self.model, input))
                   else sequential_forward)
        return sequential_output(self.model, input, forward(self.model, input))


class PixelDiscriminator(ReleasesReplacedWeights, RefusesScripting, ReferenceCheckpointMixin,
                         _Pixel):
    """Drop-in replacement for the reference ``PixelDiscriminator`` (1x1 PatchGAN), fused like
    PatchDiscriminator, its eval BatchNorm folded alike: after a write through ``.data`` or
    ``torch.nn.utils.vector_to_parameters`` and an in-place change of the vector, call
    ``fastp2p.nn.folding.forget_cached_weights``. A layer with weights in shared memory
    (``share_memory()``) is not cached: another process's writes are seen."""

    def __init__(self, input_nc=6, ndf=64, norm_layer=None, *, norm=None):
        input_nc, ndf = positive_ints(input_nc=input_nc, ndf=ndf)
        factory = resolve_norm_layer(norm, norm_layer)
        super().__init__(input_nc, ndf, factory)
        self.input_nc, self.ndf, self.norm = input_nc, ndf, describe_norm_layer(factory)

    def config(self) -> dict:
        return {"input_nc": self.input_nc, "ndf": self.ndf, "norm": self.norm}

    _infer_config = staticmethod(infer_pixelgan_config)

    def forward(self, input):
        if fx_tracing():
            return super().forward(input)
        check_image_batch(input[None] if unbatched(input) else input,
                          expected_channels=self.input_nc, module=self, name="PixelDiscriminator")
        if (unbatched(input) or reference_forward_wanted(input)
                or not sequential_supported(self.net)):
            return super().forward(input)
        return sequential_output(self.net, input, sequential_forward(self.net, input))
