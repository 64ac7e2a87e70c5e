"""The checkpoint behaviour shared by every public network."""
from os import PathLike

import torch

from fastp2p.nn.checkpoint import (CheckpointMismatch, another_networks_file,
                                   check_state_dict_fits, drop_legacy_instance_norm_stats,
                                   format_config, network_in_file, read_state_dict,
                                   weights_problem)
from fastp2p.nn.fused import init_dropout_rng
from fastp2p.nn.norm import KEY_READABLE_FACTORIES, describe_norm_layer

# What a checkpoint's keys cannot tell of its norm layers, and what to pass instead.
_NORM_NOT_INFERRED = ("its norm layers' type or settings cannot be read off the keys (a "
                      "BatchNorm2d without running statistics saves what a GroupNorm does); "
                      "pass the norm factory it was built with, e.g. norm_layer="
                      "functools.partial(nn.BatchNorm2d, track_running_stats=False)")


class ReferenceCheckpointMixin:
    """``load_state_dict`` that takes the reference implementation's files as they are.

    Subclasses define ``config()`` (their constructor arguments) and ``_infer_config`` (the same
    read off a state_dict), which also powers ``from_checkpoint``.

    torch's deferred initialisation (build under ``torch.device("meta")``, then ``to_empty`` and
    ``load_state_dict``, or ``load_state_dict(..., assign=True)``) leaves the U-Net's
    ``dropout_rng``, which no state_dict holds, uninitialised or on meta; it is set there as
    construction would (``init_dropout_rng``: the seed construction took, offset 0), also for a
    network inside the module the user converts or loads (torch calls these two methods on
    every submodule).
    """

    def config(self) -> dict:
        raise NotImplementedError

    @staticmethod
    def _infer_config(state_dict: dict) -> dict:
        raise NotImplementedError

    def config_string(self) -> str:
        return format_config(type(self).__name__, self.config())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return super().load_state_dict(self._fitting_state_dict(state_dict, strict),
                                       strict=strict, assign=assign)

    def _fitting_state_dict(self, state_dict, strict=True):
        """``state_dict`` as this module loads it (``read_state_dict``, InstanceNorm statistics
        of old files dropped), checked to fit (``check_state_dict_fits``) where ``strict``;
        reads only keys and shapes, so a module on the meta device checks a file too."""
        # strict=False: only this module's own entries must be tensors; torch lists the
        # others as unexpected keys, whatever they hold
        raw = read_state_dict(state_dict,
                              tensor_keys=None if strict else set(self.state_dict()))
        state_dict = drop_legacy_instance_norm_stats(self, raw)
        if strict:
            # What the file looks like is read off the file as it is: the statistics dropped
            # for this module's InstanceNorms tell a BatchNorm file from the others.
            check_state_dict_fits(
                self, state_dict,
                lambda _: format_config(type(self).__name__, self._infer_config(raw)))
        return state_dict

    def __setstate__(self, state):
        # A network pickled whole (torch.save(model)) before the networks kept the norm
        # factory's description holds the factory as ``norm_layer`` and no ``norm``, which
        # config() and repr read.
        if "norm" not in state and "norm_layer" in state:
            state = dict(state)
            state["norm"] = describe_norm_layer(state.pop("norm_layer"))
        super().__setstate__(state)

    def _apply(self, fn, recurse=True):
        # Only to_empty takes a tensor off the meta device (.to() refuses to copy from it), into
        # uninitialised memory.
        rng = self._buffers.get("dropout_rng")
        converted = super()._apply(fn, recurse)
        if rng is not None and rng.is_meta and not self.dropout_rng.is_meta:
            init_dropout_rng(self, self.dropout_rng.device)
        return converted

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)
        # An assigning load takes the parameters off meta (torch reads the flag as here); its
        # tensors are in ``state_dict`` already (torch loads the submodules after this call).
        rng = self._buffers.get("dropout_rng")
        if rng is not None and rng.is_meta and local_metadata.get("assign_to_params_buffers"):
            loaded = next((value for key, value in state_dict.items() if key.startswith(prefix)
                           and isinstance(value, torch.Tensor) and not value.is_meta), None)
            if loaded is not None:
                init_dropout_rng(self, loaded.device)

    @classmethod
    def from_checkpoint(cls, source, map_location="cpu", **overrides):
        """Build the network a checkpoint (path or state_dict) was saved from, and load it.

        The configuration is read off the keys and shapes; so is the norm, for nn.BatchNorm2d and
        nn.InstanceNorm2d (or a functools.partial of them, as the reference builds them) with any
        affine= and track_running_stats=, except a BatchNorm2d without running statistics, whose
        keys a GroupNorm's match. ``overrides`` sets what they cannot tell (e.g. ``use_dropout``, or
        a ``norm_layer`` factory, which replaces the inferred ``norm``), or forces a value. A file
        that fails to load says that its norm may be one the keys cannot tell, or, where it has the
        built network's configuration but lacks, adds or reshapes entries (an incomplete or edited
        file), says so, as ``load_state_dict`` does; a file of another network (a discriminator's
        given for the generator) says what it looks like and which class loads it. Each error names
        the file (a path given) or says "the state_dict". A file of a fastp2p run's checkpoint set
        (``NAME/latest_net_G.pth`` beside its manifest) loads as the manifest records it, as
        ``fastp2p test`` loads it: a save killed before its renames finished is still the latest
        save (``fastp2p.nn.checkpoint_sets.load_file``).
        """
        where = (f"checkpoint {str(source)!r}" if isinstance(source, (str, PathLike))
                 else "the state_dict")
        try:
            state_dict = read_state_dict(source, map_location=map_location)
        except IsADirectoryError:
            raise ValueError(f"{where}: is a folder, not a network file") from None
        problem = weights_problem(state_dict)
        if problem is not None:
            raise ValueError(f"{where}: {problem}")
        try:
            inferred = cls._infer_config(state_dict)
        except ValueError as err:
            unreadable = f"no {cls.__name__} configuration could be read off its keys ({err})"
            raise ValueError(f"{where}: " + (another_networks_file(cls.__name__, state_dict, err)
                                             or unreadable)) from None
        if overrides.get("norm_layer") is not None:
            inferred.pop("norm", None)
        elif inferred.get("norm") in KEY_READABLE_FACTORIES and overrides.get("norm") is None:
            inferred["norm_layer"] = KEY_READABLE_FACTORIES[inferred.pop("norm")]
        config = {**inferred, **overrides}
        # Checked on the meta device first: the widths are read off one weight each, and a
        # file with one widened weight asked for a network of tens of GiB, built before its
        # other entries were compared. Once every entry fits, the network's tensors are the
        # file's own in number, already in memory (load_safely bounds them by the file's bytes).
        try:
            with torch.device("meta"):
                skeleton = cls(**config)
        except RuntimeError as err:  # widths past what torch can size ("Storage size ...")
            raise ValueError(f"{where}: its shapes ask for {format_config(cls.__name__, config)}, "
                             f"a network too large to build ({err})") from None
        try:
            skeleton._fitting_state_dict(state_dict)
        except CheckpointMismatch as mismatch:
            if mismatch.incomplete_file:  # no configuration or factory would fit it: as it is
                raise
            given = ", ".join(f"{name}=" for name in overrides)
            # a size given against what the keys tell is the likeliest cause: said first (not a
            # norm, whose settings the keys may not tell)
            contradicted = [f"{name}={inferred[name]!r} (given {value!r})"
                            for name, value in overrides.items()
                            if name in inferred and name != "norm" and inferred[name] != value]
            if contradicted:
                advice = (f"its keys say {', '.join(contradicted)}: leave those out to build "
                          "what the file holds")
            elif overrides.get("norm") is not None or overrides.get("norm_layer") is not None:
                advice = f"check {given} against what the network was built with"
            else:
                advice = _NORM_NOT_INFERRED + (f"; or check {given}" if given else "")
            built = "inferred from it" + (f" with {given} as given" if given else "")
            raise ValueError(f"{where} does not fit {skeleton.config_string()}, the "
                             f"configuration {built}: {advice}\n{mismatch.details}") from None
        model = cls(**config)
        model.load_state_dict(state_dict)
        return model


def fits_the_network_it_looks_like(state_dict) -> bool:
    """Whether ``state_dict`` loads whole into the network its keys and shapes look like
    (``network_in_file``: the widths read off one weight each), checked on the meta device. An
    edited file whose first convolution alone was widened looks like a network of that width,
    which its other entries do not fit: advice to pass that width would lead nowhere. A norm
    the keys cannot tell (``_NORM_NOT_INFERRED``) is no disagreement."""
    import fastp2p.nn

    found = network_in_file(state_dict)
    if found is None:
        return False
    with torch.device("meta"):
        skeleton = getattr(fastp2p.nn, found.class_name)(**found.config)
    try:
        skeleton._fitting_state_dict(state_dict)
    except CheckpointMismatch as mismatch:
        return not mismatch.incomplete_file
    return True
