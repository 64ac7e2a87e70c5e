"""The checkpoint behaviour shared by every public network."""
from os import PathLike

from fastp2p.nn.checkpoint import (CheckpointMismatch, check_state_dict_fits,
                                   drop_legacy_instance_norm_stats, format_config, read_state_dict)

# What a checkpoint's keys cannot tell of its norm layers, and what to pass instead.
_NORM_NOT_INFERRED = ("its norm layers' settings (affine=, track_running_stats=) or type cannot "
                      "be inferred from the keys; pass the norm factory it was built with, e.g. "
                      "norm_layer=functools.partial(nn.BatchNorm2d, affine=False) or "
                      "functools.partial(nn.InstanceNorm2d, affine=True)")


class ReferenceCheckpointMixin:
    """``load_state_dict`` that takes the reference implementation's files as they are.

    Subclasses define ``config()`` (their constructor arguments) and ``_infer_config`` (the same
    read off a state_dict), which also powers ``from_checkpoint``.
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
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def from_checkpoint(cls, source, map_location="cpu", **overrides):
        """Build the network a checkpoint (path or state_dict) was saved from, and load it.

        The configuration is read off the keys and shapes; ``overrides`` sets what they cannot
        tell (e.g. ``use_dropout``, or a ``norm_layer`` factory, which replaces the inferred
        ``norm``: the keys do not tell e.g. an affine InstanceNorm), or forces a value.
        """
        state_dict = read_state_dict(source, map_location=map_location)
        inferred = cls._infer_config(state_dict)
        if overrides.get("norm_layer") is not None:
            inferred.pop("norm", None)
        model = cls(**{**inferred, **overrides})
        try:
            model.load_state_dict(state_dict)
        except CheckpointMismatch as mismatch:
            where = (f"checkpoint {str(source)!r}" if isinstance(source, (str, PathLike))
                     else "the state_dict")
            given = ", ".join(f"{name}=" for name in overrides)
            if overrides.get("norm") is not None or overrides.get("norm_layer") is not None:
                advice = f"check {given} against what the network was built with"
            else:
                advice = _NORM_NOT_INFERRED + (f"; or check {given}" if given else "")
            built = "inferred from it" + (f" with {given} as given" if given else "")
            raise ValueError(f"{where} does not fit {model.config_string()}, the configuration "
                             f"{built}: {advice}\n{mismatch.details}") from None
        return model
