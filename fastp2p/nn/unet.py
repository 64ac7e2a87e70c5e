"""fastp2p.UNet: the reference U-Net generator's parameters and outputs, run fast."""
from fastp2p.nn.checks import check_image_batch, positive_ints, whole_number
from fastp2p.nn.checkpoint import infer_unet_config
from fastp2p.nn.compat import ReferenceCheckpointMixin
from fastp2p.nn.folding import ReleasesReplacedWeights, gradient_wanted
from fastp2p.nn.fused import (init_dropout_rng, reference_forward_wanted, set_dropout_rng,
                              unet_forward, unet_output, unet_supported)
from fastp2p.nn.recomputation import dropout_needs_torch_generator
from fastp2p.nn.norm import describe_norm_layer, resolve_norm_layer
from fastp2p.nn.tracing import RefusesScripting, compiler_tracing, fx_tracing
from fastp2p.nn.unet_conv import unet_conv_forward
from fastp2p.ops.backends.conv_choice import may_fuse
from fastp2p.reference.unet import UnetGenerator

MIN_NUM_DOWNS = 5  # the reference always builds the 4 outer levels plus the innermost one


class UNet(ReleasesReplacedWeights, RefusesScripting, ReferenceCheckpointMixin, UnetGenerator):
    """Drop-in replacement for the reference ``UnetGenerator``.

    Same constructor (``norm_layer`` as the reference passes it, or ``norm="batch" | "instance"
    | "none"``), same ``state_dict`` keys, shapes and dtypes, same outputs within DESIGN.md's
    tolerances. Inputs must be N x input_nc x H x W with H and W multiples of 2**num_downs.

    The forward runs the modules' own convolutions and fastp2p's fused norm + activation
    (+ dropout, + skip concatenation) ops (fastp2p.nn.fused); norm layers it cannot reproduce
    exactly (e.g. GroupNorm, SyncBatchNorm, a training BatchNorm with momentum=None), layers
    other than the reference block's (an activation or the output's Tanh of another type, a
    layer appended, a LeakyReLU with a negative slope), parametrized layers (spectral_norm,
    weight_norm), a convolution whose weight or bias was replaced by a plain tensor or a buffer
    (``del conv.weight; conv.weight = w``), forward hooks on inner modules (which the fused
    forward, calling no submodule, would skip; or a global forward hook) and, where a gradient
    is wanted, backward hooks on inner modules (or global ones), a Dropout with p >= 1, and
    calls the fused ops cannot serve (an empty batch, torch.jit.trace, torch.func transforms
    such as vmap, forward-mode AD: ``fastp2p.nn.fused.reference_forward_wanted``) run the
    reference forward (the layers are listed once, and again after a submodule is registered:
    fastp2p.nn.layer_walk; their settings, LeakyReLU slopes included, hooks and the
    convolutions' parameter dicts are asked every call). BatchNorm picks its statistics as torch
    does (fastp2p.nn.batch_statistics).
    The output has the memory format and strides the reference returns (channels-last when the
    input's strides, or the weights', suggest it, except that torch's InstanceNorm returns
    NCHW, so with instance norms only the last convolution's weight can; else NCHW). CPU
    float32 inference computes channels-last either way, through cached copies of the convolutions'
    weights packed for oneDNN (fastp2p.ops.onednn_packed; for each transposed convolution, the
    layout of its form measured fastest: packed, its four phases' packed convolution, or
    channels-last for the GEMM form), rebuilt when a weight changes (memory: one copy of each
    weight per layout a layer has run in); the first such call per input size class and thread
    count is slower: it packs the weights and times the three forms of each transposed
    convolution (fastp2p.ops.conv_transpose). An optimizer step
    is seen (torch's fused optimizers through a step hook: fastp2p.nn.folding), a write through
    ``.data`` is not, nor an in-place change of a tensor a parameter's ``.data`` was set to
    (``torch.nn.utils.vector_to_parameters`` sets each to a view of its vector): after one, call
    ``fastp2p.nn.folding.forget_cached_weights``. A layer with weights in shared memory
    (``share_memory()``) is not cached: another process's writes are seen. ``.to()``,
    ``.double()`` and the like drop the copies they made stale.
    The layers that the conv choice gives to the fused convolution
    (fastp2p.ops.backends.conv_choice: none by default, all with FASTP2P_CONV=fused; a committed
    table's layers on the GPU model and in the direction it measured) run as
    fastp2p.ops.conv_norm_act instead (fastp2p.nn.unet_conv), with the same dropout masks; a
    forward it gives no layer of runs the forward above unchanged.
    Behaviour change: in train mode with ``use_dropout=True`` the dropout masks come from a
    counter-based RNG, not torch's global RNG, so they differ from the reference's masks (the
    math given a mask is the same). State: the non-persistent buffer ``dropout_rng``
    ([seed, offset], int64), whose offset advances after each training forward; set it with
    ``set_dropout_rng(seed, offset)``. Its default seed differs per U-Net built in the process
    (the first's is torch.initial_seed(): fastp2p.nn.fused.default_dropout_seed), so separately
    built U-Nets draw independent masks; a copy (``copy.deepcopy``) keeps its original's stream,
    as a copied torch.Generator does: call ``set_dropout_rng`` on it for masks of its own.
    Under torch.compile, torch.export, torch.fx and torch.jit.trace the reference forward runs
    instead (traced as torch ops: fastp2p.nn.tracing), and dropout draws from torch's
    generator; so does a training forward with dropout under
    ``torch.utils.checkpoint(..., use_reentrant=False)``, whose recomputation must draw the
    first run's masks (the reentrant variant is refused in the backward:
    fastp2p.nn.recomputation).
    """

    def __init__(self, input_nc=3, output_nc=3, num_downs=8, ngf=64, norm_layer=None,
                 use_dropout=False, *, norm=None):
        input_nc, output_nc, ngf = positive_ints(input_nc=input_nc, output_nc=output_nc, ngf=ngf)
        num_downs = whole_number("num_downs", num_downs, MIN_NUM_DOWNS,
                                 " (the U-Net has at least 5 levels, which the reference "
                                 "builds for any smaller num_downs too: pass 5; 7 for 128x128 "
                                 "inputs, 8 for 256x256)")
        factory = resolve_norm_layer(norm, norm_layer)
        super().__init__(input_nc, output_nc, num_downs, ngf, factory, use_dropout)
        self.input_nc, self.output_nc, self.num_downs = input_nc, output_nc, num_downs
        self.ngf, self.use_dropout = ngf, use_dropout
        # The factory's description, not the factory: a lambda or local function (the
        # reference's get_norm_layer("none") returns one) would stop torch.save(model) and pickle.
        self.norm = describe_norm_layer(factory)
        init_dropout_rng(self)

    def config(self) -> dict:
        return {"input_nc": self.input_nc, "output_nc": self.output_nc,
                "num_downs": self.num_downs, "ngf": self.ngf, "norm": self.norm,
                "use_dropout": self.use_dropout}

    _infer_config = staticmethod(infer_unet_config)

    def forward(self, input):
        """The translated images: ``input`` N x input_nc x H x W, floating point in [-1, 1]
        (the parameters' dtype, or any under autocast), H and W multiples of 2**num_downs, any
        memory format; returns N x output_nc x H x W in [-1, 1] (tanh), with the dtype and
        memory format of the reference module's output. Call the module, ``G(input)``, not
        this method."""
        if fx_tracing():
            return super().forward(input)
        check_image_batch(input, expected_channels=self.input_nc, module=self, name="UNet",
                          spatial_multiple=2 ** self.num_downs)
        # Under torch.compile / torch.export the reference forward's torch ops are traced (the
        # compiler fuses them itself; dropout then draws from torch's generator, as in the
        # reference): the fused walk does not trace into one graph.
        if (reference_forward_wanted(input) or compiler_tracing() or not unet_supported(self)
                or (self.training and self.use_dropout and dropout_needs_torch_generator("UNet"))):
            return super().forward(input)
        forward = (unet_conv_forward if may_fuse(input, gradient_wanted(self, input))
                   else unet_forward)
        return unet_output(self, input, forward(self, input))

    def set_dropout_rng(self, seed: int, offset: int = 0) -> None:
        """Position the dropout stream (e.g. restore it from a training checkpoint): ``seed``
        an int in [0, 2**64) (its low 32 bits are kept: all the kernels use), ``offset`` an int
        in [0, 2**63); anything else raises ValueError (fastp2p.nn.fused.set_dropout_rng)."""
        set_dropout_rng(self, seed, offset)
