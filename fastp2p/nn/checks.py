"""Input validation shared by the public modules: fail early with a message a user can act on."""
import operator

import numpy as np
import torch


def check_image_batch(x, *, expected_channels: int, module: torch.nn.Module, name: str,
                      spatial_multiple: int = 1) -> None:
    """Raise ValueError unless ``x`` is an N x C x H x W floating tensor this module can take.

    ``spatial_multiple``: H and W must be multiples of it (the U-Net halves them num_downs times).
    Under autocast a float32 input to a bf16/fp16 region is fine, so dtypes are only compared
    to the parameters' outside autocast. Under ``torch.jit.trace`` the sizes are not checked:
    it records them as tensors and warns (TracerWarning) at each comparison, which it cannot
    record; torch's own checks skip there too (torch.distributions), and the traced reference
    forward's ops still refuse a size that does not fit.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating-point tensor, got {x.dtype}; convert it "
                         "with .float() and scale it to [-1, 1], the range pix2pix networks "
                         "take (8-bit images: x.float() / 127.5 - 1)")
    # (torch._C._get_tracing_state, not _is_tracing: torch.compile folds the former to None and
    # breaks its graph at the latter)
    if torch._C._get_tracing_state() is None:
        _check_sizes(x, expected_channels, name, spatial_multiple)
    for param in module.parameters():   # (not next(..., None): torch 2.8's dynamo refuses it)
        break
    else:
        return
    if x.device != param.device:
        raise ValueError(f"{name} input is on {x.device} but the module's parameters are on "
                         f"{param.device}; move one with .to(device)")
    # (the meta device has no autocast to ask about: torch raises for it)
    autocast = not x.is_meta and torch.is_autocast_enabled(x.device.type)
    if not autocast and x.dtype != param.dtype:
        raise ValueError(f"{name} input dtype {x.dtype} does not match the parameters' "
                         f"{param.dtype}; convert one with .to(dtype) or run under autocast")


def _check_sizes(x, expected_channels: int, name: str, spatial_multiple: int) -> None:
    channels = x.shape[1]
    if channels != expected_channels:
        fix = f"build {name} with input_nc={channels}"
        if channels > expected_channels:
            fix = (f"keep the first {expected_channels} with x[:, :{expected_channels}] (e.g. "
                   f"an RGBA image's alpha channel dropped), or {fix}")
        elif channels == 1:
            fix = (f"repeat the one channel with x.expand(-1, {expected_channels}, -1, -1) (a "
                   f"grayscale image), or {fix}")
        raise ValueError(f"{name} expects {expected_channels} input channels, got {channels} "
                         f"(shape {tuple(x.shape)}); {fix}")
    height, width = x.shape[-2:]
    if height % spatial_multiple or width % spatial_multiple or height == 0 or width == 0:
        raise ValueError(f"{name} needs height and width that are positive multiples of "
                         f"{spatial_multiple}, got {height}x{width}; resize or crop the input "
                         f"(e.g. to {_nearest_multiple(height, spatial_multiple)}x"
                         f"{_nearest_multiple(width, spatial_multiple)})")


def _nearest_multiple(size: int, multiple: int) -> int:
    """The positive multiple of ``multiple`` nearest ``size`` (halfway: the larger)."""
    return max(1, (size + multiple // 2) // multiple) * multiple


def with_article(word: str) -> str:
    """``word`` after "a" or "an", by its first letter ("an int", "an OrderedDict", "a dict");
    an acronym of capitals starting with U is read "you" ("a UNet")."""
    vowel = word[:1].lower() in "aeiou" and not word[:2].isupper()
    return f"{'an' if vowel and word else 'a'} {word}"


def whole_number(name: str, value, minimum: int, why: str = "") -> int:
    """``value`` as a plain int: any integral type the reference's constructors take (numpy's
    too, via ``operator.index``), but not a bool (``True`` is no size); ValueError unless it is
    >= ``minimum``. ``why``: said after the bound."""
    number = _plain_int(value)
    if number is None or number < minimum:
        bound = "a positive int" if minimum == 1 and not why else f"an int >= {minimum}{why}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def int_in_range(name: str, value, low: int, high: int, high_text: str, why: str = "") -> int:
    """``value`` as a plain int (as ``whole_number`` takes it); ValueError, one line, unless
    ``low <= value < high``. ``high_text``: how the message writes ``high`` ("2**64");
    ``why``: said after the range."""
    number = _plain_int(value)
    if number is None or not low <= number < high:
        raise ValueError(f"{name} must be an int in [{low}, {high_text}){why}, got {value!r}")
    return number


def _plain_int(value):
    """``value`` as an int if it is of an integral type other than bool, else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_ints(**values) -> list:
    """The constructor sizes ``values`` as plain ints, each checked >= 1 (``whole_number``)."""
    return [whole_number(name, value, 1) for name, value in values.items()]
