"""The data options, named as in the reference implementation's BaseOptions."""
import argparse

from fastp2p.option_types import dataset_size, given_path, image_side, loader_workers

# the embedded datasets (fastp2p.data.default_dataset builds them; defined here, where the
# parsers read them, so that --help imports no Pillow)
TASKS = ("gray2color", "edges2photo")
DEFAULT_TASK = "gray2color"

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
# the modes whose images are resized with --load_size before (or instead of) a crop
_MODES_OF_LOAD_SIZE = ("resize_and_crop", "scale_width", "scale_width_and_crop")


def crop_size_problem(mode: str, load_size: int, crop_size: int) -> str | None:
    """What is wrong with a --crop_size above --load_size, or None. The reference's datasets
    assert crop_size <= load_size in every mode (a crop larger than the scaled image cannot be
    taken), also where --preprocess does not resize with --load_size: say so there, or its
    default is named with no hint why it matters."""
    if crop_size <= load_size:
        return None
    problem = f"--crop_size {crop_size} is larger than --load_size {load_size}"
    if mode in _MODES_OF_LOAD_SIZE:
        return f"{problem}; pass a crop_size <= load_size"
    return (f"{problem}, which --preprocess {mode} does not resize with, but must be at least "
            f"the crop, as in the reference; pass --load_size {crop_size} too")


def add_data_arguments(parser: argparse.ArgumentParser, single_images: bool = False
                       ) -> argparse.ArgumentParser:
    """Add the reference-named data options (and ``--skip-bad``) to ``parser``; returns it.
    ``single_images`` (fastp2p test; training and packing need pairs): --dataset_mode single
    too, with no default in the parser, since --model test implies single where pix2pix reads
    aligned pairs (fastp2p.train.reference_options resolves it)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataroot", type=given_path, default=None,
                       help="dataset folder: DATAROOT/{train,val,test}/ holding A|B images side "
                            "by side (aligned), or A/ and B/ subfolders (two_folders), or the "
                            "output of `fastp2p pack` (detected). Default: a small dataset built "
                            "once from scikit-image's sample photographs (see --task)")
    group.add_argument("--task", default=None, choices=TASKS,
                       help="without --dataroot, which embedded dataset: gray2color (grayscale "
                            "-> colour photo, the paper's colourisation task) or edges2photo "
                            f"(Canny edge map -> photo) (default {DEFAULT_TASK})")
    single = ("; single: every image under DATAROOT itself (not DATAROOT/PHASE) translated "
              "without a target, saving NAME_real and NAME_fake and no L1, as the reference's "
              "--model test, which implies it" if single_images else "")
    group.add_argument("--dataset_mode", default=None if single_images else "aligned",
                       choices=("aligned", "two_folders") + (("single",) * single_images),
                       help="aligned: each image is A|B side by side, split at w/2; "
                            "two_folders: PHASE/A/x.png pairs with PHASE/B/x.* by name "
                            "(the same stem, any image extension); "
                            f"a packed DATAROOT holds pairs either way and ignores it{single} "
                            "(default aligned)")
    group.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                       help="AtoB translates the left (A) image into the right (B) one, BtoA "
                            "the right into the left (default %(default)s)")
    group.add_argument("--preprocess", default="resize_and_crop", choices=PREPROCESS_MODES,
                       help="how images are scaled and cropped at load time, as the "
                            "reference: resize_and_crop (resize to --load_size squares, random "
                            "--crop_size crop), crop (crop only), scale_width (width to "
                            "--load_size, aspect kept), scale_width_and_crop (then crop), none "
                            "(sides rounded to a multiple of 4) (default %(default)s)")
    group.add_argument("--load_size", type=image_side, default=286,
                       help="scale images to this size (at most 32768)")
    group.add_argument("--crop_size", type=image_side, default=256,
                       help="then crop to this size (at most 32768)")
    group.add_argument("--no_flip", action="store_true",
                       help="do not flip pairs horizontally (by default half of them are)")
    group.add_argument("--max_dataset_size", type=dataset_size, default=float("inf"),
                       help="use at most this many pairs (the first ones in sorted order)")
    group.add_argument("--serial_batches", action="store_true",
                       help="take pairs in order instead of shuffling them")
    group.add_argument("--num_threads", type=loader_workers, default=None,
                       help="data loading worker processes; for a packed dataset in `fastp2p "
                            "train`, reader threads (at least 1); at most the cores this "
                            "process may use (its affinity mask and CPU quota), or 4 on fewer "
                            "cores (default: chosen from the usable cores, printed at the "
                            "start; the reference's default is 4)")
    group.add_argument("--input_nc", type=int, default=3, choices=(1, 3),
                       help="channels of the input image (1 converts it to grayscale)")
    group.add_argument("--output_nc", type=int, default=3, choices=(1, 3),
                       help="channels of the output image (1 converts it to grayscale)")
    group.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                       help="skip unreadable or mismatched files (and list them) instead of "
                            "stopping at the first one")
    return parser
