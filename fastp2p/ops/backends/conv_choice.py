"""Which convolution runs a network layer: the module's own (cuDNN / oneDNN) followed by the
norm-act op — today's path — or the fused convolution (fastp2p.ops.conv_norm_act: the previous
norm + activation in its prologue, this norm's statistics in its epilogue).

A new path becomes a default only by a measurement (DESIGN.md §6): the fused convolution runs a
layer by default only when ``conv_choice.json`` beside this file lists it for the device the
layer runs on and the direction of the call — a table a GPU run writes from its per-layer
benchmark (``benchmarks/conv_layer_timing.py --out``; the rule is
``benchmarks/conv_choice_table.py``'s) and commits with its results. No table is committed, so
by default every layer runs today's path. A table is

    {"format": 2, "device": "NVIDIA H200",
     "fused": {"forward": [entry, ...], "forward+backward": [entry, ...]}, ...}

``device`` is ``device_name`` of the GPU it was measured on: a table routes nothing on another
GPU model or on the CPU (a layer's speed, and whether its tiles fit shared memory, differ
there). ``fused["forward"]`` lists the layers whose forward alone won (they run fused where no
gradient is wanted: inference, the network in train or eval mode; the benchmark times a
batch-norm network's forward in both, eval with today's path folding the norm into the
convolution as its inference does, and the rule wants a win in each),
``fused["forward+backward"]`` those whose forward and backward together won (where a gradient is
wanted: training) — ``MODES``, the benchmark rows' modes. An entry is ``{"norm", "dtype",
"input", "weight", "stride", "padding"[, "transposed"]}`` (``layer_key``'s fields; a decoder's
transposed conv has ``"transposed": true`` and its ``input`` is the concatenation of its
sources); other top-level fields are the run's record. A table of another format (the first
writer's: no device, one list measured forward+backward) is refused with a ValueError naming the
reason. Under autocast a layer's key has autocast's dtype (``fused_conv_dtype``: what the
module's conv would compute in, so a bfloat16 table takes effect in the bf16 training step).

A network forward the table routes no layer of runs today's forward unchanged: ``may_fuse`` asks
first, cheaply (whether the table lists any layer for the input's device, the call's direction,
dtype and batch size; without a table nothing is looked up), and the network's walk
(fastp2p.nn.fused_conv.conv_stack_forward, fastp2p.nn.unet_conv.unet_conv_forward) then asks
each of its layers before running any, keyed with the shape its input will have
(``fused_conv_dtype``'s ``input_shape``), and runs today's forward where the table lists none of
them — a table names layers by their shapes, not their network: a layer of the same shapes in
another network (the U-Net's second conv is the PatchGAN's) does the same measured work. In a
forward it routes some layers of, the others run today's ops (module conv + norm-act:
fastp2p.nn.unet_conv, fastp2p.nn.fused_conv), except the U-Net's CPU inference forms, which only
today's forward has.

``FASTP2P_CONV`` overrides the table: ``fused`` runs every layer the network can fuse through
the fused convolution (tests and GPU experiments; an error where no backend has it),
``module`` none.
"""
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch

from fastp2p.ops.backends import conv_fused_backend
from fastp2p.ops.backends.choice_tables import device_name, read_table

TABLE = Path(__file__).with_name("conv_choice.json")
FORMAT = 2
ENV_VAR = "FASTP2P_CONV"
CHOICES = ("fused", "module")
# A call's direction: no gradient wanted (inference), or a gradient wanted (training: the
# backward follows); the benchmark rows' modes.
MODES = ("forward", "forward+backward")
# What the fused convolution stores (kernels/conv_fused.py STORAGE_DTYPES).
FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def layer_key(norm: str, dtype, input_shape, weight_shape, stride: int, padding: int,
              transposed: bool = False) -> tuple:
    """The lookup key of one layer: its norm, the storage dtype's name, the (N, C, H, W) input,
    the weight ((C_out, C_in, KH, KW); transposed: (C_in, C_out, KH, KW)), stride, padding and
    whether it is a transposed convolution (a table entry's optional "transposed", default
    false)."""
    return (norm, _dtype_name(dtype), tuple(int(s) for s in input_shape),
            tuple(int(s) for s in weight_shape), int(stride), int(padding), bool(transposed))


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def routed_key(device: str, mode: str, layer: tuple) -> tuple:
    """What ``fused_layers`` holds: (the device's name, a ``MODES`` direction, a layer_key)."""
    return (device, mode, layer)


def mode(gradient: bool) -> str:
    """The ``MODES`` direction of a call that wants a gradient (or not)."""
    return MODES[1] if gradient else MODES[0]


@lru_cache(maxsize=None)
def fused_layers(path: Path) -> frozenset:
    """The ``routed_key``s the table at ``path`` (TABLE) gives to the fused convolution (empty
    without a table; choice_tables.read_table, the one reader of both choice tables)."""
    return read_table(path, kind="conv choice table", check_format=_check_format,
                      remedy="rebuild it from a GPU run's per-layer benchmark",
                      keys=_routed_keys)


def _check_format(path: Path, table) -> None:
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a conv choice table of format {FORMAT} (a \"device\" and, per "
            f"direction, {' / '.join(MODES)}, the layers to fuse): an older table's layers "
            "name neither the GPU they were measured on nor the direction, so they cannot be "
            "routed; rebuild it with benchmarks/conv_layer_timing.py --out on that GPU or "
            "delete it")


def _routed_keys(device: str, table: dict):
    fused = table["fused"]
    if set(fused) - set(MODES):
        raise ValueError(f"directions {sorted(fused)}, not {' / '.join(MODES)}")
    return (routed_key(device, m, layer_key(e["norm"], e["dtype"], e["input"], e["weight"],
                                            e["stride"], e["padding"], e.get("transposed", False)))
            for m, entries in fused.items() for e in entries)


def forced() -> str:
    """The FASTP2P_CONV override: "fused", "module", or "" (the table decides)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value not in ("",) + CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {CHOICES} or unset, got {value!r}")
    return value


def check_setting(device) -> None:
    """ValueError for a FASTP2P_CONV that the convolutions of a network on ``device`` refuse at
    their first call: a value not in CHOICES, or fused where no backend runs the fused
    convolution there (asked of a float32 layer, as a network's forward asks it). For a command
    to say so before it writes anything: train had written its run folder by the first step."""
    if forced() == "fused":
        fused_conv_dtype(torch.zeros(1, 3, 8, 8, device=device),
                         torch.zeros(8, 3, 4, 4, device=device), stride=2, padding=1,
                         norm="none", gradient=False)


def may_fuse(x: torch.Tensor, gradient: bool) -> bool:
    """Whether a network forward on input ``x`` (``gradient``: it wants one,
    fastp2p.nn.folding.gradient_wanted) may run any layer fused: FASTP2P_CONV=fused, or the
    table lists a layer for x's device, this direction, the dtype x's convolutions compute in
    and x's batch size, and a backend can run the fused convolution there. Else the network
    keeps today's forward untouched. Only a first sieve, costing nothing without a table: a
    layer listed for this call need not be one of this network's (the walk's plan of its own
    layers decides). Under torch.compile / torch.export the table routes nothing: it measured
    eager layers, and the compiler fuses today's ops itself."""
    choice = forced()
    if choice != "":
        return choice == "fused"
    if torch.compiler.is_compiling():  # first: dynamo cannot trace the cached table read
        return False
    layers = fused_layers(TABLE)
    if not layers:  # no table: no device or dtype to look up
        return False
    # (device, direction, a layer_key's dtype and input batch size)
    listed = (device_name(x.device), mode(gradient), _dtype_name(compute_dtype(x)), x.shape[0])
    return (any((key[0], key[1], key[2][1], key[2][2][0]) == listed for key in layers)
            and conv_fused_backend(x.device) is not None)


# The dtypes autocast casts for a convolution (float64 stays float64, as autocast leaves it).
_AUTOCAST_CASTS = (torch.float32, torch.bfloat16, torch.float16)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a convolution computes ``t`` in: autocast's for t's device type when autocast
    is on there (it casts a module conv's floating operands to it), else t's own."""
    device = t.device.type
    if t.dtype in _AUTOCAST_CASTS and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def fused_conv_dtype(x: torch.Tensor, weight: torch.Tensor, *, stride: int, padding: int,
                     norm: str, gradient: bool, transposed: bool = False,
                     input_shape: Optional[Sequence[int]] = None) -> Optional[torch.dtype]:
    """The dtype in which the layer conv(x, weight) followed by ``norm`` runs the fused
    convolution, or None when it runs its module. Under autocast that is autocast's dtype (the
    table's key and the dtype the caller casts the operands to), else x's. ``gradient``:
    whether the network's call wants one (the table's forward+backward list decides, else its
    forward list). ``transposed``: a decoder's transposed convolution, whose input is the
    concatenation of its sources: x is the first of them, the key's input channels are
    weight.shape[0]. ``input_shape``: the (N, C, H, W) that input will have, where x is not
    yet the layer's input but stands for its device and dtype (a network's plan of its layers,
    asked before any runs); default x.shape."""
    choice = forced()
    if choice == "module":
        return None
    dtype = compute_dtype(x)
    runnable = (dtype in FUSED_DTYPES and compute_dtype(weight) == dtype
                and conv_fused_backend(x.device) is not None)
    if choice == "fused":
        if not runnable:
            raise ValueError(f"{ENV_VAR}=fused, but the fused convolution cannot run this layer "
                             f"(input {x.dtype}, weight {weight.dtype} on {x.device}, computed "
                             f"in {dtype}): it needs Triton (a CUDA GPU, or TRITON_INTERPRET=1 "
                             "on CPU) and one dtype of float32/bfloat16/float16 (or autocast to "
                             f"bfloat16/float16); unset {ENV_VAR}")
        return dtype
    input_shape = x.shape if input_shape is None else input_shape
    if transposed:
        input_shape = (input_shape[0], weight.shape[0], *input_shape[2:])
    key = routed_key(device_name(x.device), mode(gradient),
                     layer_key(norm, dtype, input_shape, weight.shape, stride, padding,
                               transposed))
    return dtype if runnable and key in fused_layers(TABLE) else None
