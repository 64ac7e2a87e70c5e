"""The sizes of the images the generator will see, checked against what --netG needs before
anything runs: a U-Net of N levels takes only sides that are multiples of 2**N, and a size
that is not failed at the first forward, after "training ...", naming neither --load_size nor
--preprocess.

The --preprocess modes that crop (resize_and_crop, crop, scale_width_and_crop) give
--crop_size squares; scale_width gives images --load_size wide and as tall as the images'
aspect ratio makes them; none keeps the images' own sizes (rounded to multiples of 4). The
first two are known from the options, the others need one image of the split: the
size-keeping modes already refuse splits of mixed sizes, so one image stands for all.
"""
import random

from fastp2p.data.packed import refuse_preprocess_of_options
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
