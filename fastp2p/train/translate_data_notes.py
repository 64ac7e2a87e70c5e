"""The lines ``fastp2p test`` says of the data it reads: where it reads it otherwise than the
run was trained (another --direction, --dataroot or image size), where a --load_size above
--crop_size asks for random crops, and the hint added to a missing split's error where
DATAROOT holds images itself (--dataset_mode single).
"""
from pathlib import Path


def trained_otherwise_notes(args, options_file: Path, single: bool) -> list:
    """One line each where this test reads its images otherwise than the run, by its
    ``options_file``, was trained: the other --direction, another --dataroot (None, the
    embedded dataset, too) and another image size, all of which the reference's test takes
    from its command line without a word (test takes the generator's options alone from the
    run, so these are said, not changed). Single images (``single``) have no other side to
    translate from and are DATAROOT itself, so only their size is compared; --preprocess none
    reads each image at its own size. The load size is compared only where this test asks
    for crops of a larger image: whole images at --crop_size are what the reference's test
    means, where training crops 256 of 286."""
    from fastp2p.train.saved_options import OPTIONS_FILE, changed_options

    def changed(keys) -> str:
        return changed_options(args, options_file, keys)

    notes = []
    direction = "" if single else changed(("direction",))
    if direction:
        notes.append(f"translates the other way than the run was trained ({direction}")
    dataroot = "" if single else changed(("dataroot",))
    if dataroot:
        embedded = "" if args.dataroot else ": the embedded dataset"
        notes.append(f"reads another dataset than the run was trained on ({dataroot}{embedded}")
    size_keys = ("crop_size",) + (("load_size",) if args.load_size != args.crop_size else ())
    sizes = "" if args.preprocess == "none" else changed(size_keys)
    if sizes:
        notes.append(f"translates at another image size than the run was trained at ({sizes}")
    return [f"note: {note}, its {OPTIONS_FILE})" for note in notes]


def random_crop_note(args) -> str | None:
    """What a --load_size above --crop_size does to the test images (the reference's test.py
    does the same, without a word): each is resized to it and a random crop of it translated,
    so the L1 report covers crops, not whole images."""
    if args.preprocess not in ("resize_and_crop", "scale_width_and_crop") \
            or args.load_size <= args.crop_size:
        return None
    return (f"--load_size {args.load_size} is above --crop_size {args.crop_size}: each test "
            f"image is resized to {args.load_size} and a random {args.crop_size}-pixel crop of "
            "it translated (as the reference's test.py does; --seed draws them); leave out "
            "--load_size for whole images")


def single_mode_hint(args) -> str:
    """What to add to the error of a split missing where DATAROOT holds images itself: these
    may be images without targets (the reference's datasets/facades/testB), which --dataset_mode
    single translates as they are."""
    from fastp2p.data.folders import images_placed_above

    if (args.dataset_mode == "single" or not args.dataroot
            or not images_placed_above(Path(args.dataroot) / args.phase)):
        return ""
    return "; or, to translate them without targets, pass --dataset_mode single"
