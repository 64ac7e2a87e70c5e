"""The reference implementation's options that fastp2p's own options do not already cover.

junyanz/pytorch-CycleGAN-and-pix2pix defines its command line in ``options/base_options.py``,
``train_options.py`` and ``test_options.py``. fastp2p's train and test options keep those names;
the rest are added here, so every reference command for pix2pix parses after changing its first
word. Each one has one of three fates:

- mapped: it does here what it did there (``--gpu_ids -1`` -> CPU, ``--print_freq`` -> the loss
  log interval, ``--load_iter``, ``--suffix``, ``--verbose``, ...); ``apply_reference_options``
  turns it into fastp2p's own settings, ``resolve_test_model`` test's ``--model test`` (the
  reference's model of one generator for images without targets: ``--dataset_mode single``,
  ``--model_suffix``);
- ignored: it has nothing to act on here (the visdom display, the image pool pix2pix does not
  use); the run prints ONE line naming those given and why;
- refused: a value fastp2p cannot honour (``--model cycle_gan``, several ``--gpu_ids``) stops
  with a one-line error saying what to do instead.

The logging options of the reference (``--use_wandb``, ``--wandb_project_name``) live with the
trackers, in ``fastp2p.train.trackers``.
"""
import argparse
from dataclasses import dataclass

from fastp2p.option_types import non_negative_int, plain_name, positive_int

GROUP_TITLE = "reference options (accepted so its commands run unchanged)"
VISDOM = "no visdom display here; see web/index.html, --tensorboard, --use_wandb"
DEFAULT_LOG_EVERY = 50  # steps between loss reads when neither --log-every nor --print_freq


@dataclass(frozen=True)
class IgnoredOption:
    flag: str
    phases: tuple       # "train" and/or "test": where the reference defines it
    type: object        # the reference's type; None for a store_true flag
    reference_default: object
    why: str


IGNORED = (
    IgnoredOption("--display_id", ("train",), int, 1, VISDOM),
    IgnoredOption("--display_server", ("train",), str, "http://localhost", VISDOM),
    IgnoredOption("--display_env", ("train",), str, "main", VISDOM),
    IgnoredOption("--display_port", ("train",), int, 8097, VISDOM),
    IgnoredOption("--display_ncols", ("train",), int, 4, VISDOM),
    IgnoredOption("--update_html_freq", ("train",), int, 1000,
                  "every --display_freq sample goes to the HTML page"),
    IgnoredOption("--display_winsize", ("train", "test"), int, 256,
                  "images are saved at the size the networks produce"),
    IgnoredOption("--pool_size", ("train",), int, 50,
                  "the reference's pix2pix model uses no image pool either: it sets 0"),
    IgnoredOption("--batch_size", ("test",), int, 1,
                  "test translates one image at a time, as the reference's test.py forces"),
)


# The reference's option names before its 2019 renames, as commands written for it then still
# give them; each with what says the same here. Not accepted (their values would need
# translating too): an error naming them says the name to use.
OLDER_NAMES = {
    "--niter": "--n_epochs", "--niter_decay": "--n_epochs_decay", "--which_epoch": "--epoch",
    "--batchSize": "--batch_size", "--loadSize": "--load_size", "--fineSize": "--crop_size",
    "--which_direction": "--direction", "--which_model_netG": "--netG",
    "--which_model_netD": "--netD", "--nThreads": "--num_threads",
    "--resize_or_crop": "--preprocess", "--how_many": "--num_test",
    "--no_lsgan": "--gan_mode vanilla",
}


def older_names_hint(unrecognized: list, parser: argparse.ArgumentParser) -> str:
    """For unrecognized words among which are the reference's older option names that
    ``parser`` has under their new names: " (the reference's older names: --niter is now
    --n_epochs, ...)"; "" for none."""
    renames = []
    for word in unrecognized:
        old = word.split("=", 1)[0]
        new = OLDER_NAMES.get(old)
        if new and new.split()[0] in parser._option_string_actions:
            renames.append(f"{old} is now {new}")
    return f" (the reference's older names: {', '.join(renames)})" if renames else ""

def add_reference_arguments(parser: argparse.ArgumentParser, phase: str) -> None:
    """Add the reference options fastp2p does not define itself (``phase``: train or test)."""
    group = parser.add_argument_group(
        GROUP_TITLE, "The options of the reference's options/base_options.py and "
                     f"{phase}_options.py that fastp2p does not\nhave under the same name: "
                     "mapped onto fastp2p's own, or accepted and ignored (a run names the\n"
                     "ignored ones it was given, in one line).")
    models = {"train": "any other (cycle_gan, test, colorization) is an error",
              "test": "test, the reference's one-generator model, translates images without "
                      "targets (it implies --dataset_mode single); any other (cycle_gan, "
                      "colorization) is an error"}[phase]
    group.add_argument("--model", default="pix2pix",
                       help=f"pix2pix, the one model fastp2p trains; {models} "
                            "(default %(default)s)")
    if phase == "test":
        group.add_argument("--model_suffix", type=_file_name_part, default="",
                           help="with --model test, load EPOCH_net_G{MODEL_SUFFIX}.pth as the "
                                "generator, as the reference (default: none)")
    several = {"train": "run one process per GPU with `torchrun --nproc_per_node=K -m fastp2p "
                        "...` instead",
               "test": "test translates on one device"}[phase]
    group.add_argument("--gpu_ids", default=None, metavar="IDS",
                       help="as the reference: -1 = CPU (--device cpu), N = cuda:N (--device "
                            f"cuda:N); several ids are refused: {several} (default: --device)")
    group.add_argument("--load_iter", type=non_negative_int, default=0,
                       help="when > 0, load iter_LOAD_ITER_* (saved by train --save_by_iter) "
                            "instead of --epoch (default %(default)s)")
    group.add_argument("--verbose", action="store_true",
                       help="print the networks and their parameter counts")
    group.add_argument("--suffix", default="",
                       help="append _SUFFIX to --name; may name other options, e.g. "
                            "'{netG}_size{load_size}'; the result must be a plain name, as "
                            "--name (default: none)")
    if phase == "train":
        group.add_argument("--print_freq", type=positive_int, default=None, metavar="IMAGES",
                           help="read, log and print the losses every this many training "
                                "images (rounded to whole batches; sets --log-every)")
        group.add_argument("--phase", type=plain_name, default="train",
                           help="the split of DATAROOT to train on (default %(default)s)")
        group.add_argument("--save_by_iter", action="store_true",
                           help="at every --save_latest_freq also keep iter_IMAGES_* (IMAGES: "
                                "training images so far), loadable with --load_iter IMAGES")
        group.add_argument("--no_html", action="store_true",
                           help="write no web/ folder (no sample images, loss plot or HTML "
                                "page); loss_log.csv is still written")
    for option in IGNORED:
        if phase not in option.phases:
            continue
        kwargs = ({"action": "store_true"} if option.type is None
                  else {"type": option.type, "metavar": "N" if option.type is int else "X"})
        group.add_argument(option.flag, default=argparse.SUPPRESS,
                           help=f"ignored: {option.why} (reference default "
                                f"{option.reference_default})", **kwargs)


def apply_reference_options(args: argparse.Namespace, phase: str) -> str | None:
    """Turn the mapped reference options into fastp2p settings, in place, after
    ``refuse_unsupported_values`` (and for a test ``resolve_test_model``), which the commands
    ask once, before torch loads.

    Raises ValueError (one line) for a value fastp2p cannot honour. Returns the one line to print
    about the ignored options that were given, or None.
    """
    args.name = run_name(args)
    if args.gpu_ids is not None:
        args.device = _device_for_gpu_ids(args.gpu_ids, phase)
    if args.load_iter > 0:
        # what the reference loads then; its test.py still names the results folder by the
        # --epoch given (with _iterN added): results_folder_name
        args.given_epoch, args.epoch = args.epoch, checkpoint_label(args)
    if phase == "train":
        args.log_every = _log_every(args)
    return _ignored_line(args, phase)


def refuse_unsupported_values(args: argparse.Namespace, phase: str) -> None:
    """ValueError (one line) for a --model or --gpu_ids value fastp2p cannot honour on any
    device: a model other than pix2pix, ids that are no integers, several GPUs, a --device
    they contradict. Needs no torch and no file, so train and test ask it before their checks
    of the dataset and the run folder: a reference user's --model cycle_gan was told that
    DATAROOT/train is missing."""
    if args.model not in (("pix2pix", "test") if phase == "test" else ("pix2pix",)):
        # an empty name (--model "") has no reference implementation to point to
        elsewhere = f", or the reference implementation for {args.model}" if args.model else ""
        raise ValueError(f"--model {args.model or repr('')}: fastp2p implements pix2pix only; "
                         f"use --model pix2pix (or leave it out){elsewhere}")
    if args.gpu_ids is not None:
        _refuse_another_device(args.gpu_ids, _gpus(args.gpu_ids, phase), args.device)


def _refuse_another_device(gpu_ids: str, gpus: list, device: str) -> None:
    """ValueError where --device names another device than --gpu_ids (``gpus``, its ids)."""
    wanted = _gpus_device(gpus)
    if device not in ("auto", wanted):
        raise ValueError(f"--gpu_ids {gpu_ids} means --device {wanted}, but --device {device} "
                         "was given: keep one of them")


def _gpus_device(gpus: list) -> str:
    """The device of --gpu_ids' ``gpus``: the first one's, or the CPU's for none."""
    return f"cuda:{gpus[0]}" if gpus else "cpu"


def run_name(args: argparse.Namespace) -> str:
    """The run's folder name under CHECKPOINTS_DIR: --name, and with --suffix S "NAME_S", S
    formatted with the options' values as the reference does. ValueError (one line) for a
    --suffix that is no format of option names or makes no plain name."""
    if not args.suffix:
        return args.name
    try:
        name = f"{args.name}_{args.suffix.format(**vars(args))}"
    except KeyError as err:
        raise ValueError(f"--suffix {args.suffix!r}: {err.args[0]!r} is not an option name "
                         "(write options as {netG}, {load_size}, ...)") from None
    except (IndexError, ValueError) as err:  # "{0}", "{netG", "{netG!z}"
        raise ValueError(f"--suffix {args.suffix!r}: not a format of option names ({err}); "
                         "write options as {netG}, {load_size}, ...") from None
    try:  # the parser checked --name alone; the run's folder is named by both
        return plain_name(name)
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--name with --suffix {args.suffix!r}: {err}") from None


def checkpoint_label(args: argparse.Namespace) -> str:
    """The checkpoint set a run loads: ``iter_N`` with --load_iter N, else --epoch."""
    return f"iter_{args.load_iter}" if args.load_iter > 0 else args.epoch


def _file_name_part(text: str) -> str:
    """--model_suffix: a part of a file name, so empty or a plain name (no path separators)."""
    return plain_name(text) if text else text


def resolve_test_model(args: argparse.Namespace) -> None:
    """--dataset_mode of a test (None when not given), set in ``args``: --model test, the
    reference's model of one generator and no target, implies single and refuses another (as
    the reference's TestModel requires it); --model pix2pix reads aligned pairs by default.
    Single reads the images in --dataroot itself, so without one there is nothing to
    translate. Needs no torch: test asks it before it looks at its split."""
    if args.model != "test":
        if args.model_suffix:
            raise ValueError(f"--model_suffix {args.model_suffix}: it names the generator file "
                             "of --model test (EPOCH_net_G{MODEL_SUFFIX}.pth); add --model "
                             "test, or drop it")
        args.dataset_mode = args.dataset_mode or "aligned"
    elif args.dataset_mode not in (None, "single"):
        raise ValueError(f"--model test --dataset_mode {args.dataset_mode}: the test model "
                         "translates images without targets, --dataset_mode single; drop "
                         f"--dataset_mode, or use --model pix2pix for {args.dataset_mode} pairs")
    else:
        args.dataset_mode = "single"
    if args.dataset_mode == "single" and not args.dataroot:
        raise ValueError("--dataset_mode single translates the images under --dataroot itself: "
                         "give --dataroot (the folder of the images, not a dataset of splits)")


def results_folder_name(args: argparse.Namespace) -> str:
    """The reference test.py's results folder under RESULTS_DIR/NAME: PHASE_EPOCH, and with
    --load_iter N, PHASE_EPOCH_iterN (EPOCH: the --epoch given, ``latest`` by default)."""
    if args.load_iter > 0:
        return f"{args.phase}_{args.given_epoch}_iter{args.load_iter}"
    return f"{args.phase}_{args.epoch}"


def _gpus(gpu_ids: str, phase: str) -> list:
    """The GPU ids of --gpu_ids (none: the CPU); ValueError for ids that are no integers or
    several GPUs."""
    try:
        ids = [int(item) for item in gpu_ids.split(",") if item.strip()]
    except ValueError:
        ids = []
    if not ids:   # also "" (a script's empty variable), which ran on the CPU without a word
        raise ValueError(f"--gpu_ids takes comma-separated integers (-1 for the CPU), got "
                         f"{gpu_ids!r}")
    gpus = [i for i in ids if i >= 0]  # the reference drops negative ids; none left = CPU
    if len(gpus) > 1 and phase == "test":  # test translates in one process, on one device
        raise ValueError(f"--gpu_ids {gpu_ids}: fastp2p test translates on one device; pass one "
                         "id (--gpu_ids N)")
    if len(gpus) > 1:
        raise ValueError(f"--gpu_ids {gpu_ids}: fastp2p runs one process per GPU; use "
                         f"`torchrun --nproc_per_node={len(gpus)} -m fastp2p ...` without "
                         "--gpu_ids (CUDA_VISIBLE_DEVICES picks which GPUs)")
    return gpus


def _device_for_gpu_ids(gpu_ids: str, phase: str) -> str:
    """The device --gpu_ids names, after ``refuse_unsupported_values``; ValueError under
    torchrun, or for a GPU where none is visible."""
    from fastp2p.torchrun_variables import launched_world_size

    gpus = _gpus(gpu_ids, phase)
    if gpus and launched_world_size() > 1:
        raise ValueError(f"--gpu_ids {gpu_ids} under torchrun: each process takes "
                         "cuda:LOCAL_RANK; drop --gpu_ids")
    if gpus:
        import torch
        if not torch.cuda.is_available():
            raise ValueError(f"--gpu_ids {gpu_ids}: no CUDA GPU is visible; use --gpu_ids -1 "
                             "(CPU)")
    return _gpus_device(gpus)


def _log_every(args) -> int:
    if args.print_freq is None:
        return DEFAULT_LOG_EVERY if args.log_every is None else args.log_every
    if args.log_every is not None:
        raise ValueError("--print_freq and --log-every both set how often losses are read: "
                         "keep one of them")
    from fastp2p.torchrun_variables import launched_world_size

    # images of all processes, as --display_freq and --save_latest_freq count them: a step
    # trains --batch_size images on each of torchrun's processes
    return max(1, args.print_freq // (args.batch_size * launched_world_size()))


def _ignored_line(args, phase: str) -> str | None:
    given = [option for option in IGNORED if phase in option.phases
             and option.flag[2:] in vars(args)]
    if not given:
        return None
    by_reason = {}
    for option in given:
        by_reason.setdefault(option.why, []).append(
            f"{option.flag} {getattr(args, option.flag[2:])}")
    return "ignored reference options: " + "; ".join(
        f"{', '.join(flags)} ({why})" for why, flags in by_reason.items())


def describe_networks(**networks) -> str:
    """What ``--verbose`` prints, as the reference's ``print_networks(verbose=True)``: each
    network's modules and its parameter count."""
    parts = []
    for name, net in networks.items():
        count = sum(parameter.numel() for parameter in net.parameters())
        parts.append(f"network {name}:\n{net}\n[network {name}] {count / 1e6:.3f} M parameters")
    return "\n".join(parts)
