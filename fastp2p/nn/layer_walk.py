"""The cached walk of a network's module tree, which the fused forwards (fastp2p.nn.fused) read
instead of asking the modules' attributes on every call: the submodules' hook dicts, the
norm-like layers, whether the weights are plain Parameters, the convolutions' parameter dicts
and what the root's own ``layers`` function lists (for a U-Net: whether its levels hold the
layers the fused forward reads, its LeakyReLUs, Dropouts and end convolutions). A tree is
listed once, the walk kept on its root, and listed again after any submodule registration in
the process (``_Registrations``, torch's global hooks), so a replaced layer or an added
parametrization shows at the next call; what changes without a registration (a hook added, a
setting, train/eval, a weight deleted from its parameter dict) is asked per call through what
the walk lists (``fastp2p.nn.fused._fused_forward_fits``).
"""
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.nn.modules.module import (register_module_buffer_registration_hook,
                                     register_module_module_registration_hook)
from torch.nn.utils import parametrize

from fastp2p.reference.unet import UnetSkipConnectionBlock

_CONVS = nn.modules.conv._ConvNd


class _Registrations:
    """Counts submodule registrations anywhere in the process (torch's global hook: assignment,
    ``add_module``, ``Sequential.__setitem__`` / ``append``), and registrations of an
    InstanceNorm's running buffers (``register_buffer`` or assignment, e.g. ``norm.running_mean
    = torch.zeros(c)``), so a cached walk of a module tree can tell whether the tree may have
    changed since."""
    count = 0

    @classmethod
    def hook(cls, module, name, submodule):
        cls.count += 1

    @classmethod
    def buffer_hook(cls, module, name, buffer):
        if name in _RUNNING_BUFFERS and isinstance(module, nn.InstanceNorm2d):
            cls.count += 1


_RUNNING_BUFFERS = ("running_mean", "running_var")
register_module_module_registration_hook(_Registrations.hook)
register_module_buffer_registration_hook(_Registrations.buffer_hook)


class Walk(NamedTuple):
    """What ``cached_walk`` lists of a module tree."""
    registrations: int    # _Registrations.count when walked
    hook_dicts: tuple     # the forward hook dicts of every module but the root (forward_hook_dicts)
    backward_hook_dicts: tuple  # and their backward hook dicts (``backward_hook_dicts``)
    norms: tuple          # the norm-like modules (``_norm_like``)
    plain_weights: bool   # no parametrization anywhere, every convolution a plain weight Parameter
    instance_stats: bool  # an InstanceNorm2d holds running buffers (``_instance_norm_stats``)
    layers_fit: bool      # every layer where and what the fused forward reads it as (``layers``)
    leaky_relus: tuple    # the LeakyReLU modules, whose slopes are read per call
    output_path: tuple    # the U-Net's first and last convolutions, and whether its second
    #                       level's output passes a norm returning NCHW last
    #                       (``fastp2p.nn.fused.unet_output``)
    dropouts: tuple       # the Dropout modules, whose probabilities are read per call
    # The convolutions' parameter dicts, asked per call (``conv_parameters_in_place``); last and
    # with a default so that a walk in a model pickled before it existed still loads.
    conv_parameters: tuple = ()

    def __reduce__(self):
        # A cache of the tree it lists: a copy or a pickle of the network (copy.deepcopy,
        # torch.save(model), a spawned process's argument) holds an empty tuple instead and lists
        # its own tree on its next call (``cached_walk``), so a pickle names no class of these
        # internals, whose fields may change from one version to the next.
        return tuple, ()


# A tree's last walk is kept on its root (a U-Net, a discriminator's Sequential), not in a
# global weak dictionary: a hook on a submodule whose closure refers back to the network would
# make the dictionary's value keep its own key alive; on the root it is a cycle the collector
# frees with the network.
_WALK_ATTRIBUTE = "_fastp2p_walk"


def _any_layers(root: nn.Module) -> tuple:
    """For a tree whose forward checks its layers itself
    (``fastp2p.nn.fused.sequential_supported``)."""
    return True, (), (), ()


def cached_walk(root: nn.Module, layers=_any_layers) -> Walk:
    """``root``'s tree (with ``layers(root)``: whether its layers fit the fused forward, its
    LeakyReLUs and end convolutions; one function per kind of root), listed once and listed
    again after any submodule registration (a layer replaced, a parametrization added: torch
    registers it as a submodule), and on every call
    while it has parametrized or hook-computed weights (removing a parametrization registers
    nothing). Under torch.compile the walk is traced instead: the compiled code does not run it
    again."""
    if torch.compiler.is_compiling():
        return _walk_of(root, layers)
    cached = root.__dict__.get(_WALK_ATTRIBUTE)  # None, or () in a copy (``Walk.__reduce__``)
    if (not cached or cached.registrations != _Registrations.count
            or not cached.plain_weights):
        cached = root.__dict__[_WALK_ATTRIBUTE] = _walk_of(root, layers)
    return cached


def _walk_of(root: nn.Module, layers) -> Walk:
    submodules = tuple(root.modules())[1:]  # not root: its own hooks run (it is called)
    return Walk(_Registrations.count, tuple(d for m in submodules for d in forward_hook_dicts(m)),
                tuple(d for m in submodules for d in backward_hook_dicts(m)),
                tuple(_norm_like(submodules)), _plain_weights(submodules),
                _instance_norm_stats(submodules), *layers(root),
                tuple(m._parameters for m in submodules if isinstance(m, _CONVS)))


def _instance_norm_stats(modules) -> bool:
    """Whether an InstanceNorm2d holds running buffers: torch hands them to F.instance_norm,
    which then updates them, even with track_running_stats set to False after construction;
    the fused ops keep no running statistics for instance norm. (Asked per walk, not per call:
    giving an InstanceNorm a buffer registers it, which ``_Registrations`` counts; a buffer
    deleted leaves the network on its reference forward until the next walk.)"""
    return any(m._buffers.get(name) is not None for m in modules
               if type(m) is nn.InstanceNorm2d for name in _RUNNING_BUFFERS)


def _plain_weights(modules) -> bool:
    """Whether the fused forwards, which read weights from the modules' parameter dicts, see
    what the modules' own forwards would: no parametrization (spectral_norm, weight_norm, ...)
    and every convolution's weight a Parameter (the hook-based ``torch.nn.utils.spectral_norm``
    replaces it by a plain attribute, recomputed by a forward pre-hook)."""
    return not any(parametrize.is_parametrized(m) for m in modules) and all(
        isinstance(m._parameters.get("weight"), nn.Parameter)
        for m in modules if isinstance(m, _CONVS))


def conv_parameters_in_place(conv_parameters: tuple) -> bool:
    """Whether every convolution still holds its weight and bias (None or a tensor) in its
    parameter dict, where the fused forwards, the folds and the weight copies read them
    (fastp2p.nn.folding), as its own forward would: a weight or bias deleted and set again as a
    plain tensor or a buffer (``del conv.weight; conv.weight = w``) registers no module, so a
    walk made before does not see it; such a convolution's forward reads that tensor."""
    return all("weight" in params and "bias" in params for params in conv_parameters)


def forward_hook_dicts(module: nn.Module) -> tuple:
    """The dicts that ``module.register_forward_hook`` / ``register_forward_pre_hook`` add to
    (created with the module, never replaced by torch), so a walk can list them once and see a
    hook added or removed by asking them (a U-Net-256 tree: about a microsecond; asking the
    modules' attributes cost over ten, benchmarks/NOTES.md)."""
    return module._forward_hooks, module._forward_pre_hooks


def backward_hook_dicts(module: nn.Module) -> tuple:
    """The dicts that ``register_full_backward_hook`` / ``register_full_backward_pre_hook`` (and
    the older ``register_backward_hook``) add to: such a hook fires only where the module is
    called, which the fused forwards do not do for a norm or a block."""
    return module._backward_hooks, module._backward_pre_hooks


# The layer types the fused forwards reproduce themselves (exactly these types: a subclass may
# compute something else); every other submodule is norm-like: asked ``norm_supported`` per call,
# which knows only the norms the fused ops reproduce, so that any other module (a GroupNorm, a
# SiLU) sends the network to its reference forward. (Tuples here and in _RUNNING_BUFFERS, not
# frozensets: torch 2.8's dynamo cannot trace a frozenset's __contains__ or iteration.)
REPRODUCED_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Dropout,
                     nn.Sequential, UnetSkipConnectionBlock)


def _norm_like(modules):
    return (m for m in modules if type(m) not in REPRODUCED_LAYERS)
