"""Loading the reference implementation's checkpoints: key clean-up, config inference, errors.

The reference saves plain ``state_dict``s of the unwrapped networks. Files from other setups
(DataParallel's ``module.``, ``torch.compile``'s ``_orig_mod.``, or PyTorch < 0.4 InstanceNorm
running statistics) are normalised here; anything that still does not fit raises a ValueError
naming the keys and the configuration the file looks like.
"""
from collections import OrderedDict
from collections.abc import Mapping
from os import PathLike
from typing import NamedTuple

import torch

from fastp2p.nn.checkpoint_sets import load_file
from fastp2p.nn.checks import with_article
from fastp2p.nn.finite import first_nonfinite
from fastp2p.nn.norm import norm_of_saved_settings
from fastp2p.nn.safe_load import load_safely

# load_safely is re-exported: train.checkpoints, tests and users import it from here, as before
__all__ = ["CheckpointMismatch", "NetworkInFile", "NotAStateDict", "NotATensorEntry",
           "another_networks_file", "check_state_dict_fits", "drop_legacy_instance_norm_stats",
           "format_config", "infer_patchgan_config", "infer_pixelgan_config", "infer_unet_config",
           "load_safely", "network_in_file", "read_state_dict", "weights_problem",
           "with_metadata"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_MAX_KEYS_SHOWN = 6
class NotAStateDict(ValueError, TypeError):
    """What was given is not a mapping of names: a TypeError too, as torch's
    ``load_state_dict`` raises for a value that is not dict-like."""


class NotATensorEntry(ValueError, RuntimeError):
    """A state_dict entry the module needs holds no tensor: a RuntimeError too, as torch's
    ``load_state_dict`` raises for it."""


def read_state_dict(source, map_location="cpu", tensor_keys=None) -> OrderedDict:
    """A state_dict from a path or an already loaded mapping (any ``Mapping``, as torch takes),
    wrapper prefixes removed, its ``_metadata`` (each module's saved version, which torch's
    loaders read) kept under the same names.
    ``tensor_keys``: the (unprefixed) keys whose values must be tensors, None for all; others
    pass as they are (``load_state_dict(strict=False)``, where torch reports an extra entry
    such as ``"epoch": 3`` as an unexpected key, as for the reference)."""
    if isinstance(source, (str, PathLike)):
        state_dict = load_file(source, map_location=map_location)
        where = f"checkpoint {str(source)!r}"
    else:
        state_dict, where = source, "the given state_dict"
    if not isinstance(state_dict, Mapping) or not all(isinstance(k, str) for k in state_dict):
        raise NotAStateDict(f"{where} is not a state_dict (a mapping of names to tensors); "
                            "save networks with torch.save(net.state_dict(), path)")
    for key, value in state_dict.items():
        checked = tensor_keys is None or _strip_wrapper_prefixes(key) in tensor_keys
        if checked and not isinstance(value, torch.Tensor):
            raise NotATensorEntry(
                f"{where} is not a network's state_dict: {key!r} holds "
                f"{with_article(type(value).__name__)}, not a tensor (a training checkpoint "
                "bundling other values?); pass the network's own state_dict, as saved by "
                "torch.save(net.state_dict(), path)")
    return with_metadata(((_strip_wrapper_prefixes(k), v) for k, v in state_dict.items()),
                         _unwrapped_metadata(getattr(state_dict, "_metadata", None)))


def weights_problem(state_dict: Mapping) -> str | None:
    """What keeps the tensors of ``state_dict`` from being a network's weights, in a few words
    starting with the key ("model.0.weight holds NaN or Inf ..."); None if nothing does. The one
    check of every loader of network files (``from_checkpoint``, ``fastp2p test``,
    ``--continue_train``): a meta or sparse tensor; values that are not real floating point
    (the one integer entry is a batch norm's count: a complex weight would pass the NaN / Inf
    check with NaN in it and load with its imaginary part dropped, an integer or bool one loads
    as numbers no training wrote); NaN or Inf; a negative running variance, whose square root
    is NaN in eval mode (all-black images)."""
    tensors = [(key, value) for key, value in state_dict.items()
               if isinstance(value, torch.Tensor)]
    for key, value in tensors:
        if value.is_meta or value.layout != torch.strided:
            kind = "meta tensor (no data)" if value.is_meta else f"{value.layout}"
            return f"{key} is a {kind}, not network weights"
    for key, value in tensors:
        if not value.is_floating_point() and not key.endswith("num_batches_tracked"):
            return f"{key} holds {value.dtype} values, not a network's floating-point weights"
    bad = first_nonfinite(tensors)
    if bad is not None:  # fastp2p never saves one; other tools' files may hold a diverged run
        return f"{bad} holds NaN or Inf (the weights of a diverged run)"
    negative = next((key for key, value in tensors
                     if key.endswith("running_var") and bool((value < 0).any())), None)
    if negative is not None:  # no batch ever gives one: an edited file
        return (f"{negative} holds a negative variance, which no training computes (its square "
                "root is NaN: the network would output NaN)")
    return None


def with_metadata(entries, metadata) -> OrderedDict:
    """``entries`` as a state_dict carrying ``metadata`` (None: none) as ``_metadata``."""
    state_dict = OrderedDict(entries)
    if metadata is not None:
        state_dict._metadata = metadata
    return state_dict


def _unwrapped_metadata(metadata):
    """``metadata`` keyed by the unwrapped module names. A wrapper's own entry ("" of a
    DataParallel, its module under "module") comes before its module's, which replaces it.
    Entries torch's loaders could not read (a crafted file's: no mapping, a version that is no
    int) are left out, as if not recorded."""
    if not isinstance(metadata, Mapping):
        return None
    unwrapped = OrderedDict()
    for name, entry in metadata.items():
        if (isinstance(name, str) and isinstance(entry, Mapping)
                and type(entry.get("version", 0)) is int):
            unwrapped[_strip_wrapper_prefixes(name + ".")[:-1]] = entry
    return unwrapped


def _strip_wrapper_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def drop_legacy_instance_norm_stats(module: torch.nn.Module, state_dict: dict) -> dict:
    """Remove running-stat entries of InstanceNorm layers that keep none (old checkpoints have
    them)."""
    instance_norms = {name for name, m in module.named_modules()
                      if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)
                      and not m.track_running_stats}
    return with_metadata(((key, value) for key, value in state_dict.items()
                          if not (key.rpartition(".")[2] in _STAT_SUFFIXES
                                  and key.rpartition(".")[0] in instance_norms)),
                         getattr(state_dict, "_metadata", None))


class CheckpointMismatch(ValueError, RuntimeError):
    """A state_dict whose keys or shapes do not fit the module; ``details`` lists them (the
    message's second line), for a caller that gives its own advice (``from_checkpoint``), except
    where ``incomplete_file``: the file has the module's own configuration but lacks, adds or
    reshapes entries, which no configuration or norm factory fixes. A RuntimeError too, as
    torch's ``load_state_dict`` raises for the same mismatch, so code written for the reference
    module catches it unchanged."""

    def __init__(self, message: str, details: str, incomplete_file: bool = False):
        super().__init__(f"{message}\n{details}")
        self.details, self.incomplete_file = details, incomplete_file


def check_state_dict_fits(module: torch.nn.Module, state_dict: dict, describe_file) -> None:
    """Raise CheckpointMismatch (a ValueError and a RuntimeError) if keys or shapes differ; the
    message says what the file looks like (``describe_file(state_dict)``, the configuration it
    was saved from) and what to do: build the module with that configuration (for another
    network's file, ``another_networks_file``: load it with that network's class); or, where
    that is the module's own (read off ``state_dict`` by ``module._infer_config``), that its
    norm layers were of another type or had other settings (where the keys cannot tell), or
    that the file is incomplete or edited (``CheckpointMismatch.incomplete_file``)."""
    expected = module.state_dict()
    versions = getattr(state_dict, "_metadata", None) or {}
    missing = [k for k in expected
               if k not in state_dict and not _filled_in_by_torch(module, k, versions)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k}: file {_shape_of(state_dict[k])} vs module {tuple(v.shape)}"
                   for k, v in expected.items()
                   if k in state_dict and _shape_of(state_dict[k]) != tuple(v.shape)]
    if not (missing or unexpected or wrong_shape):
        return
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("shape mismatch", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
            more = f" (+{len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
            problems.append(f"{len(keys)} {label}: {shown}{more}")
    other_network = None  # no configuration of this class would fit such a file
    try:
        looks_like = f"the file looks like {describe_file(state_dict)}"
        same_config = _config_matches(module, module._infer_config(state_dict))
    except ValueError as err:
        looks_like = f"its configuration could not be inferred ({err})"
        same_config = False
        other_network = another_networks_file(type(module).__name__, state_dict, err)
    # The diagnosis and what to do come first, on one line; the key lists (often long) after.
    incomplete = False
    if other_network is not None:
        advice = f"{other_network}."
    elif not same_config:
        advice = (f"{looks_like}; use {type(module).__name__}.from_checkpoint(path), or build "
                  "the module with that configuration.")
    elif not wrong_shape and _other_norm_factory(module, missing, unexpected):
        advice = ("the file has this configuration, but its norm layers have other entries "
                  "(affine weights, running statistics, or the biases the reference gives "
                  "convolutions before an InstanceNorm2d): saved from norm layers of another "
                  "type or with other affine= or track_running_stats= settings, which the keys "
                  "cannot tell; build the module with the norm_layer factory it was saved with.")
    else:  # rebuilding from the file (from_checkpoint) would build this very module
        counts = ", ".join(f"{len(keys)} {label}" for label, keys in (
            ("missing", missing), ("unexpected", unexpected),
            ("of another shape", wrong_shape)) if keys)
        advice = (f"the file has this configuration, but not all its entries ({counts}): an "
                  "incomplete or edited file.")
        incomplete = True
    raise CheckpointMismatch(f"checkpoint does not fit {module.config_string()}: {advice}",
                             "details: " + "; ".join(problems), incomplete)


def _config_matches(module: torch.nn.Module, inferred: dict) -> bool:
    """Whether what a file's keys tell of its configuration is the module's (``config()`` says
    more: e.g. use_dropout, which no key tells)."""
    config = module.config()
    return all(config.get(name) == value for name, value in inferred.items())


# The entries of a norm layer that one of its settings adds or removes together: affine= its
# weight and bias, track_running_stats= its running statistics, with the batch count (which a
# file saved before PyTorch 0.4.1 lacks: torch fills it in, so it is not always listed).
_SETTING_ENTRIES = ((("weight", "bias"), ()),
                    (("running_mean", "running_var"), ("num_batches_tracked",)))


def _other_norm_factory(module: torch.nn.Module, missing: list, unexpected: list) -> bool:
    """Whether the missing and the unexpected entries are each what a network built with
    another norm factory would lack or have: whole sets of ``_SETTING_ENTRIES`` at its norm
    layers (a BatchNorm, an InstanceNorm, or the Identity of norm "none"), and convolutions'
    biases (the reference gives convolutions one before a norm built by nn.InstanceNorm2d or a
    partial of it). One statistic or batch count alone is no setting's, nor an entry of any
    other layer: an incomplete or edited file."""
    for keys in (missing, unexpected):
        by_layer = {}
        for key in keys:
            layer, _, entry = key.rpartition(".")
            by_layer.setdefault(layer, set()).add(entry)
        for layer, entries in by_layer.items():
            try:
                submodule = module.get_submodule(layer)
            except AttributeError:
                return False
            if isinstance(submodule, torch.nn.modules.conv._ConvNd):
                if entries != {"bias"}:
                    return False
                continue
            if not isinstance(submodule, (torch.nn.modules.batchnorm._NormBase,
                                          torch.nn.Identity)):
                return False
            settable = {entry for always, optional in _SETTING_ENTRIES
                        if set(always) <= entries for entry in always + optional}
            if not entries <= settable:
                return False
    return True


def _filled_in_by_torch(module: torch.nn.Module, key: str, metadata: Mapping) -> bool:
    """Whether torch's own loading supplies ``key`` when a file lacks it: a BatchNorm's
    ``num_batches_tracked``, which files saved before PyTorch 0.4.1 do not have (torch's
    BatchNorm loader puts in a count of 0 for them, so the reference loads such files). It
    does so for a module whose saved version (``metadata``, the state_dict's ``_metadata``) is
    older than 2 or not recorded, as in a plain dict."""
    owner, _, leaf = key.rpartition(".")
    if leaf != "num_batches_tracked":
        return False
    norm = module.get_submodule(owner)
    if not (isinstance(norm, torch.nn.modules.batchnorm._NormBase) and norm.track_running_stats):
        return False
    version = metadata.get(owner, {}).get("version")
    return version is None or version < 2


def _shape_of(value):
    """A tensor's shape as a tuple; what else a file holds under a tensor's key, by its type."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _conv_weight(state_dict: dict, key: str, what: str) -> torch.Tensor:
    """``state_dict[key]``, a convolution's weight: a 4-d tensor (out, in, kh, kw), whose
    shape the configuration is read from; ValueError if it is missing or is not one."""
    try:
        weight = state_dict[key]
    except KeyError:
        raise ValueError(f"no {what} key {key!r}") from None
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"{key} is {_shape_of(weight)}, not the 4-d weight of a convolution")
    return weight


def _norm_from_keys(state_dict: dict, norm_layer: str, conv: str) -> str:
    """The norm of the network that saved ``state_dict``, told by what its norm layer named
    ``norm_layer`` saves (affine weights, running statistics) and whether the convolution
    ``conv`` before it has a bias (which the reference gives only before an InstanceNorm)."""
    conv_bias = f"{conv}.bias" in state_dict
    tracked = f"{norm_layer}.running_mean" in state_dict
    if conv_bias and f"{norm_layer}.num_batches_tracked" not in state_dict:
        # an InstanceNorm's statistics without a batch count are PyTorch < 0.4's, kept by
        # layers that track none (drop_legacy_instance_norm_stats removes them)
        tracked = False
    # Settings no norm of these has (affine weights without statistics or bias: a BatchNorm
    # without running statistics, a GroupNorm) read as none: the network built so does not
    # fit the file, and from_checkpoint's message asks for the norm_layer= factory.
    return norm_of_saved_settings(f"{norm_layer}.weight" in state_dict, tracked,
                                  conv_bias) or "none"


def infer_unet_config(state_dict: dict) -> dict:
    """input_nc, output_nc, num_downs, ngf and norm of a reference U-Net checkpoint."""
    first_down = _conv_weight(state_dict, "model.model.0.weight", "U-Net outermost conv")
    last_up = _conv_weight(state_dict, "model.model.3.weight", "U-Net outermost conv")
    # Level k's Sequential is at "model.model." + "1.model." + "3.model." * (k - 1); a level with
    # a deeper submodule has keys under its index 3; the innermost level holds its up conv there.
    num_downs, prefix = 2, "model.model.1.model."
    while any(k.startswith(prefix + "3.model.") for k in state_dict):
        prefix += "3.model."
        num_downs += 1
    return {
        "input_nc": first_down.shape[1],
        "output_nc": last_up.shape[1],
        "num_downs": num_downs,
        "ngf": first_down.shape[0],
        "norm": _norm_from_keys(state_dict, "model.model.1.model.2", "model.model.1.model.1"),
    }


def infer_patchgan_config(state_dict: dict) -> dict:
    """input_nc, ndf, n_layers and norm of a reference NLayerDiscriminator checkpoint."""
    first = _conv_weight(state_dict, "model.0.weight", "PatchGAN first conv")
    conv_weights = [k for k, v in state_dict.items() if k.startswith("model.")
                    and k.endswith(".weight") and isinstance(v, torch.Tensor) and v.dim() == 4]
    # n_layers + 2 convolutions, except that n_layers 0 has three too: its second convolution
    # keeps ndf channels where n_layers 1's doubles them.
    n_layers = len(conv_weights) - 2
    second = state_dict.get("model.2.weight")
    if (n_layers == 1 and "model.2.weight" in conv_weights
            and second.shape[0] == first.shape[0]):
        n_layers = 0
    return {
        "input_nc": first.shape[1],
        "ndf": first.shape[0],
        "n_layers": n_layers,
        "norm": _norm_from_keys(state_dict, "model.3", "model.2"),
    }


def infer_pixelgan_config(state_dict: dict) -> dict:
    """input_nc, ndf and norm of a reference PixelDiscriminator checkpoint."""
    first = _conv_weight(state_dict, "net.0.weight", "PixelGAN first conv")
    return {"input_nc": first.shape[1], "ndf": first.shape[0],
            "norm": _norm_from_keys(state_dict, "net.3", "net.2")}


def format_config(class_name: str, config: dict) -> str:
    return f"{class_name}(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ")"


class NetworkInFile(NamedTuple):
    """The network a state_dict was saved from, read off its keys and shapes
    (``network_in_file``)."""
    kind: str        # "U-Net generator", "PatchGAN discriminator" or "PixelGAN discriminator"
    class_name: str  # the fastp2p class that builds it
    config: dict     # that class's constructor arguments, as its from_checkpoint infers them

    def __str__(self):
        return f"a {self.kind}, {format_config(self.class_name, self.config)}"


# The networks a file may hold, each with the inference of its configuration, tried in order.
_NETWORKS = (("U-Net generator", "UNet", infer_unet_config),
             ("PatchGAN discriminator", "PatchDiscriminator", infer_patchgan_config),
             ("PixelGAN discriminator", "PixelDiscriminator", infer_pixelgan_config))


def network_in_file(state_dict: dict) -> NetworkInFile | None:
    """The network ``state_dict`` was saved from (a U-Net, PatchGAN or PixelGAN), or None for
    none of them."""
    for kind, class_name, infer in _NETWORKS:
        try:
            return NetworkInFile(kind, class_name, infer(state_dict))
        except ValueError:
            continue
    return None


def another_networks_file(class_name: str, state_dict: dict, error: ValueError) -> str | None:
    """For ``state_dict`` off which no ``class_name`` configuration could be read (``error``:
    what its inference said) but another network's could (a discriminator's file given for the
    generator): that it holds none, what it looks like and how to load it. None otherwise."""
    other = network_in_file(state_dict)
    if other is None:
        return None
    return (f"it holds no {class_name} ({error}) but looks like {other}; load it with "
            f"fastp2p.{other.class_name}.from_checkpoint")
