"""``create_dataset(args, phase)``: the right dataset for a DATAROOT and the data options."""
import argparse
import math
import shlex
from pathlib import Path

from fastp2p.data.dataroot_checks import refuse_dataroot_options, refuse_missing_folder
from fastp2p.data.default_dataset import (CROP, DEFAULT_TASK, default_dataroot,
                                           packed_default_dataroot)
from fastp2p.data.errors import DataError, print_note
from fastp2p.data.folders import (OwnSizes, refuse_split_without_images, scan_aligned,
                                  scan_single, scan_two_folders)
from fastp2p.data.transforms import Preprocess


def create_dataset(args: argparse.Namespace, phase: str, *, pack_embedded: bool = False,
                   own_sizes: OwnSizes | None = None):
    """A Dataset of ``{"A", "B", "A_paths", "B_paths"}`` dicts for ``phase`` (train/val/test);
    with --dataset_mode single (fastp2p test), of ``{"A", "A_paths"}`` dicts, one for each image
    under DATAROOT itself, whatever ``phase``.

    ``args`` carries the options of ``add_data_arguments``. A folder written by ``fastp2p pack``
    is detected and read from its shards; no ``--dataroot`` means the embedded default dataset
    of ``--task``. ``pack_embedded`` (training, which reads the split every epoch): the
    embedded train split is read from a pack built once, where a pack serves the options
    (``_reads_embedded_pack``) and the cache can hold it (else from its folders).
    ``own_sizes`` (fastp2p test, which loads one item at a time): with a size-keeping
    --preprocess each image keeps its own size, if its network takes it, instead of all
    images having to come out at one size (``scan_aligned``).
    """
    # here, not at the top: train asks refuse_unreadable_split before torch loads
    from fastp2p.data.datasets import AlignedDataset, SingleDataset, TwoFoldersDataset

    config = Preprocess.from_args(args)
    swap = args.direction == "BtoA"
    if args.max_dataset_size < 1:
        raise DataError(f"--max_dataset_size must be >= 1, got {args.max_dataset_size}")
    limit = None if math.isinf(args.max_dataset_size) else int(args.max_dataset_size)
    refuse_dataroot_options(args)
    task = getattr(args, "task", None)
    root = Path(args.dataroot) if args.dataroot else default_dataroot(task or DEFAULT_TASK)
    refuse_missing_folder(root)
    if args.dataset_mode == "single":  # images without targets: DATAROOT's own, no split
        paths = scan_single(root, config, args.skip_bad, limit,
                            own_sizes=own_sizes, leave_out=_output_folders(args))
        return SingleDataset(paths, config)
    phase_dir = root / phase
    if pack_embedded and not args.dataroot and _reads_embedded_pack(args, config, phase):
        phase_dir = _embedded_pack(root, phase, config.load_size)
    if _is_pack(root, phase, phase_dir):
        from fastp2p.data.packed import PackedDataset
        return PackedDataset(phase_dir, config, swap, limit)
    if args.dataset_mode == "two_folders":
        pairs = scan_two_folders(phase_dir, config, args.skip_bad, limit,
                                 own_sizes=own_sizes, leave_out=_output_folders(args))
        return TwoFoldersDataset(pairs, config, swap)
    paths = scan_aligned(phase_dir, config, args.skip_bad, limit,
                         own_sizes=own_sizes, leave_out=_output_folders(args))
    return AlignedDataset(paths, config, swap)


def refuse_unreadable_split(args: argparse.Namespace, phase: str) -> None:
    """DataError where --dataroot's ``phase`` split is missing or holds no image, as
    ``create_dataset`` says it, but without reading an image: so that train says it before
    torch loads (seconds). Nothing for the embedded dataset, a pack, or --dataset_mode single
    (DATAROOT itself, which ``refuse_dataroot_options`` checks)."""
    if not args.dataroot or args.dataset_mode == "single":
        return
    root = Path(args.dataroot)
    if not _is_pack(root, phase, root / phase):
        refuse_split_without_images(root / phase, args.dataset_mode == "two_folders",
                                    args.skip_bad, _output_folders(args))


def _is_pack(root: Path, phase: str, phase_dir: Path) -> bool:
    """Whether ``phase_dir``, the ``phase`` split of ``root``, is a pack to read; DataError
    where it is none but a pack is meant (one left unfinished, the other splits of a pack) or
    ``root`` is a split itself."""
    from fastp2p.data.packed_index import PHASES, is_packed, unfinished_pack_error
    if is_packed(phase_dir):
        return True
    unfinished = unfinished_pack_error(phase_dir)
    if unfinished:
        raise unfinished
    if not phase_dir.exists():
        split = _split_given_as_dataroot(root, phase)
        if split:
            raise DataError(split)
    packed = [other for other in PHASES if is_packed(root / other)]
    if packed and not phase_dir.exists():
        raise DataError(_pack_without_split(root, phase, packed))
    return False


def _output_folders(args: argparse.Namespace) -> tuple:
    """The folders the command writes into (test's --results_dir; train's --checkpoints_dir,
    whose web/images samples test's would read too): a listing under DATAROOT leaves them out,
    or each run would read the one before's outputs as input."""
    return tuple(folder for folder in (getattr(args, "checkpoints_dir", None),
                                       getattr(args, "results_dir", None)) if folder)


def _split_given_as_dataroot(root: Path, phase: str) -> str | None:
    """What to say when ``--dataroot`` is one split (a pack's phase folder, or a folder of
    images named like a split) instead of the folder holding the splits; else None. A folder
    holding a split of its own is a dataset root whatever its name."""
    from fastp2p.data.packed_index import PHASES, is_packed
    if any((root / other).is_dir() for other in PHASES):
        return None
    if is_packed(root):
        what = f"a pack's {root.name} split"
    elif root.name in (phase, *PHASES):
        what = f"a {root.name} split, not a dataset folder holding splits"
    else:
        return None
    also = "" if root.name == phase else f" --phase {shlex.quote(root.name)}"
    # quoted as a shell reads it: the option is copied into a command line
    return f"{root} is {what}: pass --dataroot {shlex.quote(str(root.parent))}{also}"


def _pack_without_split(root: Path, phase: str, packed: list[str]) -> str:
    """What to say of a pack holding the splits ``packed`` but not ``phase``: the command that
    packs it from the source the others were packed from, with their options (their index
    records both); where that source has no such split (a --synthetic one holds train only),
    the splits to read instead, or the command packing another dataset's split."""
    from fastp2p.data.packed_index import pack_command_line, printable, read_index
    from fastp2p.data.synthetic import holds_synthetic_pairs
    head = f"{root}: a pack without a {phase} split (it holds {', '.join(packed)})"
    try:
        index = read_index(root / packed[0])
    except DataError:
        index = {}
    source = index.get("dataroot")
    if isinstance(source, str) and source and (Path(source) / phase).is_dir():
        return f"{head}; pack that split too: `{pack_command_line(root / phase, index)}`"
    # DATAROOT stands for the dataset to pack the split from
    command = pack_command_line(root / phase, dict(index, dataroot=None))
    if not isinstance(source, str) or not source:
        return f"{head}; pack that split too: `{command}`"
    synthetic = (" (--synthetic writes a train split only)"
                 if holds_synthetic_pairs(Path(source)) else "")
    return (f"{head}, and its source {printable(source)} has no {phase} split to "
            f"pack{synthetic}: pass "
            f"--phase {' or --phase '.join(packed)} to read a split the pack holds, or pack "
            f"another dataset's {phase} split into it: `{command}`")


def _embedded_pack(root: Path, phase: str, load_size: int) -> Path:
    """The embedded dataset's ``phase`` packed, or its folder where the pack cannot be built
    (a read-only cache, a full disk): the pack only saves time, so that is said (``print_note``:
    under torchrun once per node), not raised."""
    try:
        return packed_default_dataroot(root, phase, load_size) / phase
    except DataError as error:
        print_note(f"fastp2p: reading the embedded {phase} split from its image folders ({error})")
        return root / phase


def _reads_embedded_pack(args: argparse.Namespace, config: Preprocess, phase: str) -> bool:
    """Whether the embedded dataset's ``phase`` is read from its pack (built once): the train
    split, read every epoch, where a pack serves the options (aligned three-channel pairs,
    resize_and_crop) at a load size no larger than the stored crops (so the pack holds no more
    pixels than they do). The pairs are the folders' (tests/test_pack.py)."""
    return (phase == "train" and args.dataset_mode == "aligned"
            and config.mode == "resize_and_crop" and config.load_size <= CROP
            and config.a_channels == config.b_channels == 3)


def follow_packed_load_size(args: argparse.Namespace, phase: str, given: bool):
    """Take ``--load_size`` from the pack index when DATAROOT/PHASE is packed at another size
    and the user did not pass ``--load_size`` (``given``); returns a line saying so, or None.

    A pack stores its pairs already resized, so only its own load size can be read from it.
    """
    if not args.dataroot or given:
        return None
    from fastp2p.data.packed_index import is_packed, read_index
    phase_dir = Path(args.dataroot) / phase
    if not is_packed(phase_dir):
        return None
    stored = read_index(phase_dir)["load_size"]
    if stored == args.load_size:
        return None
    default, args.load_size = args.load_size, stored
    return (f"--load_size {stored} (not the default {default}): {phase_dir} was packed at that "
            "size; pass --load_size to choose a smaller one")


def packed_resize_note(args: argparse.Namespace, phase: str):
    """A line saying that DATAROOT/PHASE, packed at a larger load size than ``--load_size``, is
    read resized again from its stored pixels (``PackedDataset``); None otherwise."""
    from fastp2p.data.packed_index import is_packed, read_index
    phase_dir = Path(args.dataroot or "") / phase
    if not args.dataroot or not is_packed(phase_dir):
        return None
    stored = read_index(phase_dir)["load_size"]
    if stored <= args.load_size:
        return None
    return (f"{phase_dir} was packed at load_size {stored}: each half is resized again to "
            f"{args.load_size} (its pixels resampled twice; the image folders give the exact "
            "single resize)")


def packed_mode_note(args: argparse.Namespace, phase: str):
    """A line saying that ``--dataset_mode`` does not apply to DATAROOT/PHASE when it is packed
    from the other layout (a pack stores pairs, however their files were laid out); None
    otherwise."""
    from fastp2p.data.packed_index import is_packed, read_index
    phase_dir = Path(args.dataroot or "") / phase
    if not args.dataroot or not is_packed(phase_dir):
        return None
    stored = read_index(phase_dir)["dataset_mode"]
    if stored == args.dataset_mode:
        return None
    return (f"--dataset_mode {args.dataset_mode} does not apply to {phase_dir}: it is packed "
            f"(from {stored} images), so its stored pairs are read as they are")
