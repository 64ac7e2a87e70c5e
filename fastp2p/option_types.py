"""argparse ``type=`` checks for option values, so a bad value is refused while parsing: one line
naming the option, exit code 2 (argparse's ``parser.error``), before anything runs."""
import argparse
import math
import os

from fastp2p import cpu_info


def _int_between(low: int, high: int, why_high: str = ""):
    """``why_high``: said after a value above ``high`` (": the reason")."""
    def parse(text: str) -> int:
        value = int(text)  # a ValueError reads "invalid int value: 'x'"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}{why_high}")
        return value
    parse.__name__ = "int"
    return parse


# pack --seed: the synthetic pairs are drawn from the whole seed (numpy's default_rng), so it
# keeps the 63-bit range it has always had.
seed = _int_between(0, 2 ** 63 - 1)
# train and test --seed: torch's CPU generator (weight init), the data loader's order and the
# U-Net's dropout stream keep its low 32 bits (numpy's legacy seeding, as the reference seeds
# it, takes no more), so with no random crop or flip (their draws use the whole seed) --seed 1
# and 2**32+1 trained bit-identical networks in silence. A run's saved seed keeps the range it
# was written under (fastp2p.train.saved_options.SAVED_VALUE_TYPES).
run_seed = _int_between(0, 2 ** 32 - 1, ": torch's generators keep only its low 32 bits, so "
                        "its weight init, data order and dropout would repeat a smaller "
                        "seed's (a run saved with a larger seed keeps it at --continue_train "
                        "when --seed is left out)")
# Counts (epochs, images, steps, a batch): half of an int64, so that two of them added,
# the last epoch --n_epochs + --n_epochs_decay, is still an int64, as a training state must hold
# it (train_state_check), and so is seed + epoch, which seeds the data loader's generator each
# epoch (torch.Generator takes 64 bits). --epoch_count 10**30 failed in its first epoch with
# "Overflow when unpacking long long", the run folder written; --batch_size 2**63 in
# itertools.islice.
MAX_COUNT = 2 ** 62 - 1
positive_int = _int_between(1, MAX_COUNT)
non_negative_int = _int_between(0, MAX_COUNT)
# --ngf, --ndf: torch counts a tensor's bytes in an int64; the U-Net's widest weight, 16*NGF x
# 8*NGF x 4 x 4 float32s, is 2**13 * NGF**2 bytes, which overflows from NGF 2**25 on ("Storage
# size calculation overflowed"). Below that, a network too large for the memory is refused
# before it is built (fastp2p.train.networks.check_networks_fit_memory).
filters = _int_between(1, 2 ** 25 - 1)
# --n_layers_D: each layer halves the side; past 13 layers even the largest crop
# (MAX_LOAD_SIZE, 2**15) leaves no 1x1 logit map
# (fastp2p.patchgan_sizes.patch_logits_size). The PatchGAN is built before its input is
# checked, a layer at a time: 2**62 layers ran until memory ran out. A smaller crop takes fewer
# (fastp2p.train.image_sizes.check_patchgan_fits_images).
patch_layers = _int_between(0, 13)


# The largest --load_size and --crop_size (image_side), the largest load size a pack may record
# (fastp2p.data.packed_index) and the largest side fastp2p writes an image at (test's saved
# images: fastp2p.train.image_sizes.aspect_ratio_size): one pair of that size is already 6 GiB,
# and a larger bound lets a crafted index's sizes overflow the arithmetic that checks them.
# Here, not in fastp2p.data (numpy, torch), so that parsing --load_size imports nothing heavy.
MAX_LOAD_SIZE = 1 << 15
# --load_size, --crop_size: 1 .. MAX_LOAD_SIZE pixels. A --load_size of 100000 resized each
# image to 10**10 pixels until the kernel's out-of-memory killer ended the run; 2**40 overflowed
# inside Pillow (a traceback).
image_side = _int_between(1, MAX_LOAD_SIZE)


def _worker_count(low: int, what: str, four: str):
    """An argparse type: ``low`` .. cpu_info.most_loader_workers of the cores this process may
    run on (one per core, or 4, the reference's --num_threads, on fewer; beyond that, ``what``
    only take turns on them). ``four``: the 4 as the message names it. The cores are counted
    when a value is given."""
    def parse(text: str) -> int:
        cores = cpu_info.usable_cpus()
        return _int_between(low, cpu_info.most_loader_workers(cores),
                            f": this process may run on {cores} core(s) "
                            f"(its affinity mask and CPU quota), and more {what} than cores "
                            f"(or than {four} on fewer) only take turns on them")(text)
    parse.__name__ = "int"  # argparse's "invalid int value: 'x'"
    return parse


# --num_threads (--num_threads 1000 started 1000 worker processes) and pack --workers (1000
# started 1000 processes; the reference has no pack, so its message names no reference default)
loader_workers = _worker_count(0, "loader workers", "4, the reference's default,")
pack_workers = _worker_count(1, "pack workers", "4")


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


def dataset_size(text: str) -> int | float:
    """A count of pairs, an int (train_opt.txt then records 64, as the reference's type=int
    option writes it, not 64.0), or the float ``inf`` for no limit (--max_dataset_size; the
    reference's default is float("inf"))."""
    value = _float_or_nan(text)
    if not (value == math.inf or (math.isfinite(value) and value >= 1 and value == int(value))):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (or inf: no limit), "
                                         f"got {text!r}")
    return value if value == math.inf else int(value)


def plain_name(text: str) -> str:
    """A name used as one file or folder name (--name, --epoch): no path separators, not ``.``
    or ``..``, so nothing is written outside the folder it is meant to be in."""
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if text in ("", ".", "..") or any(s in text for s in separators) or "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a plain name without path separators (it "
                                         f"names a folder or files inside the given folder), "
                                         f"got {text!r}")
    return text


def given_path(text: str) -> str:
    """A file or folder option's value: not empty. ``--dataroot ""`` trained on the embedded
    dataset with the full-size profile (the quick defaults took "" for a folder given, the
    data for none); an empty --checkpoints_dir or --out meant the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("must be a path, got '' (an empty path names no file "
                                         "or folder)")
    return text
