"""argparse ``type=`` checks for option values, so a bad value is refused while parsing: one line
naming the option, exit code 2 (argparse's ``parser.error``), before anything runs."""
import argparse
import math
import os


def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        value = int(text)  # a ValueError reads "invalid int value: 'x'"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)
# --seed: torch.manual_seed and the data loader's generators take a 64-bit seed; a larger one
# failed deep inside with "Overflow when unpacking long long", naming no option.
seed = _int_at_least(0, 2 ** 63 - 1)


def _float_or_nan(text: str) -> float:
    """float(text), or nan for text that is no number: the checks below then refuse it with
    their own message."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def finite_non_negative_float(text: str) -> float:
    """A float that is finite and >= 0 (--init_gain, --lambda_L1, --lr: 0 is accepted, as the
    reference accepts it; nan, inf or a negative value failed only later, deep inside)."""
    value = _float_or_nan(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A float that is finite and > 0 (--aspect_ratio: the reference divides by it)."""
    value = _float_or_nan(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def adam_beta1(text: str) -> float:
    """Adam's beta1: finite, 0 <= beta1 < 1, as torch.optim.Adam requires (--beta1; nan or 1
    failed only when the optimizers were built, in a traceback)."""
    value = _float_or_nan(text)
    if not 0 <= value < 1:  # False for nan
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def dataset_size(text: str) -> float:
    """A count of pairs, or ``inf`` for no limit (--max_dataset_size; a float, as the
    reference's default is float("inf"))."""
    value = _float_or_nan(text)
    if not (value == math.inf or (math.isfinite(value) and value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (or inf: no limit), "
                                         f"got {text!r}")
    return value


def plain_name(text: str) -> str:
    """A name used as one file or folder name (--name, --epoch): no path separators, not ``.``
    or ``..``, so nothing is written outside the folder it is meant to be in."""
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if text in ("", ".", "..") or any(s in text for s in separators) or "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a plain name without path separators (it "
                                         f"names a folder or files inside the given folder), "
                                         f"got {text!r}")
    return text
