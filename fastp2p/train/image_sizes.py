"""The sizes of the images the networks will see, checked against what --netG and --netD
need before anything runs: a U-Net of N levels takes only sides that are multiples of 2**N,
and a size that is not failed at the first forward, after "training ...", naming neither
--load_size nor --preprocess; a PatchGAN needs sides its layers leave a logit map of. Also the
size test saves an image at (``aspect_ratio_size``). Nothing here loads torch, so train asks
the checks that the options alone decide before loading it
(train_before_torch._check_sizes_and_device); test asks them after reading the checkpoint,
which names the options a run was trained with.

The --preprocess modes that crop (resize_and_crop, crop, scale_width_and_crop) give
--crop_size squares; scale_width gives images --load_size wide and as tall as the images'
aspect ratio makes them; none keeps the images' own sizes (rounded to multiples of 4). The
first two are known from the options, the others need one image of the split: the
size-keeping modes already refuse splits of mixed sizes, so one image stands for all.
"""
import random

from fastp2p.data.options import crop_size_problem
from fastp2p.data.packed_index import refuse_preprocess_of_options
from fastp2p.option_types import MAX_LOAD_SIZE  # also the largest side of a saved image
from fastp2p.patchgan_sizes import most_patch_layers
from fastp2p.train.unet_names import unet_levels


def check_options_fit_unet(args) -> None:
    """The checks the options alone decide; raises ValueError naming the options. A pack at
    --dataroot refuses any --preprocess but resize_and_crop first: what --netG needs of the
    sizes another mode makes would send the user to fix a size the pack cannot give."""
    refuse_preprocess_of_options(args)
    multiple = 2 ** unet_levels(args.netG)
    if "crop" in args.preprocess and args.crop_size % multiple:
        raise ValueError(f"--crop_size {args.crop_size} must be a multiple of {multiple} for "
                         f"--netG {args.netG}")
    if args.preprocess == "scale_width" and args.load_size % multiple:
        raise ValueError(f"--preprocess scale_width --load_size {args.load_size} makes images "
                         f"{args.load_size} pixels wide, and --netG {args.netG} needs sides "
                         f"that are multiples of {multiple}: pass a --load_size that is a "
                         f"multiple of {multiple}, or --preprocess scale_width_and_crop with a "
                         f"--crop_size that is one")
    problem = crop_size_problem(args.preprocess, args.load_size, args.crop_size)
    if problem:   # an option error (exit 2), not the data's (the dataset refuses it too)
        raise ValueError(problem)


def check_images_fit_unet(args, dataset) -> tuple | None:
    """For scale_width and none, whose sizes depend on the images: the size of the split's
    first item after preprocessing (its crop and flip drawn from a private generator, so the
    run's random streams are untouched); raises ValueError naming the options and the image.
    Returns (height, width, path) of that item for the other checks of its size, or None
    where the options fix the size (or the split is empty)."""
    if args.preprocess not in ("scale_width", "none") or len(dataset) == 0:
        return None
    multiple = 2 ** unet_levels(args.netG)
    item = dataset.load(0, random.Random(0))
    height, width = item["A"].shape[-2:]
    if height % multiple == 0 and width % multiple == 0:
        return height, width, item["A_paths"]
    if args.preprocess == "scale_width":
        how = (f"--preprocess scale_width --load_size {args.load_size} makes {item['A_paths']} "
               f"{width}x{height} (--load_size wide, as tall as its aspect ratio makes it)")
        fix = (f"pass a --load_size that makes both sides multiples of {multiple}, or use "
               f"--preprocess scale_width_and_crop with a --crop_size that is one")
    else:
        how = (f"--preprocess none keeps the images' sizes (rounded to multiples of 4): "
               f"{item['A_paths']} is {width}x{height}")
        fix = (f"resize the images to multiples of {multiple}, or use --preprocess "
               f"resize_and_crop with a --crop_size that is one")
    raise ValueError(f"{how}, and --netG {args.netG} needs sides that are multiples of "
                     f"{multiple}: {fix}")


def discriminator_layers(args) -> int:
    """The 4x4 stride-2 layers --netD builds: 3 for basic, --n_layers_D for n_layers (pixel
    has none, and is built with the reference's default of 3)."""
    layers = {"basic": 3, "n_layers": args.n_layers_D, "pixel": 3}
    if args.netD not in layers:
        raise ValueError(f"--netD must be basic, n_layers or pixel, got {args.netD!r}")
    return layers[args.netD]


def check_patchgan_fits_images(args) -> None:
    """ValueError naming --n_layers_D and the most layers the image side takes, when the
    images the PatchGAN sees are too small for its layers (a kernel larger than its input,
    refused only at the first step, after the run folder was written). The options fix that
    side in the cropping --preprocess modes (--crop_size) and the width with scale_width
    (--load_size); the rest is ``check_patchgan_fits_first_image``'s."""
    if "crop" in args.preprocess:
        option, side = "--crop_size", args.crop_size
    elif args.preprocess == "scale_width":
        option, side = "--load_size", args.load_size
    else:
        return
    _check_patch_layers(args, side, f"--preprocess {args.preprocess} {option} {side}",
                        f"{option} {side} takes", f"raise {option}")


def check_patchgan_fits_first_image(args, height: int, width: int, path: str) -> None:
    """As ``check_patchgan_fits_images``, for the sides the options leave to the images: both
    with --preprocess none, the height with scale_width (the split's first item after
    preprocessing stands for all: those modes refuse splits of mixed sizes)."""
    if args.preprocess not in ("none", "scale_width"):
        return
    side = min(height, width)
    _check_patch_layers(args, side, f"--preprocess {args.preprocess} makes {path} "
                        f"{width}x{height}", f"{side}-pixel sides take",
                        "use larger images")


def _check_patch_layers(args, side: int, how: str, takes: str, fix: str) -> None:
    layers = discriminator_layers(args)
    most = most_patch_layers(side)
    if args.netD != "pixel" and layers > most:
        named = (f"--netD n_layers --n_layers_D {layers}" if args.netD == "n_layers"
                 else f"--netD {args.netD} ({layers} layers)")
        fit = f"at most --n_layers_D {most}" if most >= 0 else "no PatchGAN"
        raise ValueError(f"{named} leaves no logit map of {side}-pixel sides ({how}; each "
                         "layer halves the side, and the two 4x4 convolutions after them need "
                         f"3 pixels left): {takes} {fit}; lower --n_layers_D or {fix}")


def aspect_ratio_size(width: int, height: int, aspect_ratio: float) -> tuple[int, int]:
    """The (width, height) the reference's util.save_image gives a width x height image:
    above 1 (height, int(width * ratio)), below 1 (int(height / ratio), width). Raises
    ValueError, one line, for a side above MAX_LOAD_SIZE (which PIL would fail to allocate
    or overflow on)."""
    if aspect_ratio == 1:
        return width, height
    size = (height, width * aspect_ratio) if aspect_ratio > 1 else (height / aspect_ratio, width)
    if max(size) > MAX_LOAD_SIZE:
        raise ValueError(f"--aspect_ratio {aspect_ratio:g} makes a {width}x{height} image "
                         f"{size[0]:.3g}x{size[1]:.3g} pixels; saved sides are limited to "
                         f"{MAX_LOAD_SIZE}: pass a ratio between {height / MAX_LOAD_SIZE:.3g} "
                         f"and {MAX_LOAD_SIZE / width:.3g}")
    return int(size[0]), int(size[1])
