"""Command-line options of ``fastp2p train`` and ``fastp2p test``.

Options that exist in the reference implementation keep its names and defaults (the rest of
its options are in reference_options.py), so a user of that implementation switches by changing
the command's first word. Without ``--dataroot`` (the
embedded sample dataset) a few defaults shrink so the whole job runs in minutes on a laptop CPU:
those are ``QuickDefault`` values, shown in ``--help`` as "X (Y without --dataroot)"; an option
given explicitly always wins.
"""
import argparse

from fastp2p.option_types import (adam_beta1, filters, finite_non_negative_float, given_path,
                                  non_negative_int, patch_layers, plain_name, positive_float,
                                  positive_int, run_seed)


class QuickDefault:
    """A default replaced by ``quick`` when training on the embedded dataset."""

    def __init__(self, value, quick):
        self.value, self.quick = value, quick

    def __str__(self):
        return f"{self.value}; {self.quick} without --dataroot"


def resolve_quick_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Replace every QuickDefault left in ``args`` by the value that applies."""
    quick = getattr(args, "dataroot", None) is None
    for name, value in vars(args).items():
        if isinstance(value, QuickDefault):
            setattr(args, name, value.quick if quick else value.value)
    return args


def describe_defaults(parser: argparse.ArgumentParser, names) -> None:
    """Append "(default ...)" to the help of the options ``names`` (e.g. data options whose
    defaults a command replaced by QuickDefaults), unless their help already shows it."""
    for action in parser._actions:
        if action.dest in names and "%(default)" not in (action.help or ""):
            action.help = f"{action.help} (default %(default)s)"


def _argument_group(parser: argparse.ArgumentParser, title: str):
    """The parser's group titled ``title``, made if it does not exist yet (so options of one
    kind added by different functions show under one heading in --help)."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_model_arguments(parser: argparse.ArgumentParser, *, torchrun: bool = True) -> None:
    """Network, run-name and device options shared by train and test (``torchrun``: whether
    the command runs as torchrun's processes, one per GPU, as train does; test runs in one)."""
    group = parser.add_argument_group("model (reference names)")
    group.add_argument("--name", type=plain_name, default="experiment_name",
                       help="run name: checkpoints go to CHECKPOINTS_DIR/NAME "
                            "(default %(default)s)")
    group.add_argument("--checkpoints_dir", type=given_path, default="./checkpoints",
                       help="folder of all runs' checkpoints (default %(default)s)")
    group.add_argument("--netG", default=QuickDefault("unet_256", "unet_64"),
                       help="generator: unet_256 (8 levels, for 256x256 crops), unet_128 (7 "
                            "levels) or unet_N for any power of two N >= 32 (log2 N levels); "
                            "crops must be multiples of N (default %(default)s)")
    group.add_argument("--netD", default="basic", choices=("basic", "n_layers", "pixel"),
                       help="discriminator: basic = 70x70 PatchGAN (3 layers), n_layers = "
                            "PatchGAN with --n_layers_D layers, pixel = 1x1 PixelGAN "
                            "(default %(default)s)")
    group.add_argument("--n_layers_D", type=patch_layers, default=3,
                       help="PatchGAN layers when --netD n_layers, 0 .. 13 (more leave no "
                            "logit map of even a 32768-pixel crop); each halves the side, so "
                            "a --crop_size (--load_size with --preprocess scale_width) of S "
                            "takes at most the N with 3 * 2**N <= S (4 at 64, 6 at 256; train "
                            "refuses more before it starts, or from the first image's size "
                            "with --preprocess none) (default %(default)s)")
    group.add_argument("--ngf", type=filters, default=QuickDefault(64, 16),
                       help="generator filters in the last conv layer; a width whose weights "
                            "(in train with --ndf's, gradients and Adam moments: 16 bytes a "
                            "parameter) exceed the memory (the GPU's; on the CPU, physical RAM "
                            "or a lower cgroup memory limit, as in a container) is refused "
                            "before anything runs (default %(default)s)")
    group.add_argument("--ndf", type=filters, default=QuickDefault(64, 16),
                       help="discriminator filters in the first conv layer; train checks "
                            "it against the memory with --ngf (default %(default)s)")
    group.add_argument("--norm", default="batch",
                       choices=("batch", "instance", "none", "syncbatch"),
                       help="normalization; syncbatch = BatchNorm with statistics over all "
                            "processes of a torchrun job (CUDA only; the same as batch in one "
                            "process) (default %(default)s)")
    group.add_argument("--no_dropout", action="store_true",
                       help="no dropout in the generator (pix2pix uses dropout 0.5 as its noise)")
    group.add_argument("--init_type", default="normal",
                       choices=("normal", "xavier", "kaiming", "orthogonal"),
                       help="weight initialisation (default %(default)s)")
    group.add_argument("--init_gain", type=finite_non_negative_float, default=0.02,
                       help="scale for normal, xavier and orthogonal init, >= 0 "
                            "(default %(default)s)")
    group.add_argument("--epoch", type=plain_name, default="latest",
                       help="which saved epoch to load: 'latest' or a number (test, and "
                            "--continue_train) (default %(default)s)")
    fast = _argument_group(parser, "fastp2p execution")
    processes = ("under torchrun each process takes cuda:LOCAL_RANK" if torchrun
                 else "the one device it runs on, in one process (not under torchrun)")
    fast.add_argument("--device", default="auto",
                      help="'auto' (CUDA if visible, else CPU), 'cpu', 'cuda' or 'cuda:N'; "
                           f"{processes} (default %(default)s)")
    fast.add_argument("--seed", type=run_seed, default=0,
                      help="seed of weight init, data order, augmentation and dropout, 0 .. "
                           "2**32-1 (torch's generators keep 32 bits); the same seed, options "
                           "and compute thread count give the same run (OMP_NUM_THREADS sets "
                           "the count, else chosen from the cores and the load; train records "
                           "it in train_opt.txt) (default %(default)s)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (reference names)")
    group.add_argument("--gan_mode", default="vanilla", choices=("vanilla", "lsgan", "wgangp"),
                       help="GAN objective: vanilla = BCE as in the paper, lsgan = least "
                            "squares, wgangp = Wasserstein critic term (default %(default)s)")
    group.add_argument("--lambda_L1", type=finite_non_negative_float, default=100.0,
                       help="weight of the L1 term of the generator loss, >= 0 "
                            "(default %(default)s)")
    group.add_argument("--lr", type=finite_non_negative_float, default=QuickDefault(2e-4, 1e-3),
                       help="initial Adam learning rate, >= 0 (default %(default)s)")
    group.add_argument("--beta1", type=adam_beta1, default=0.5,
                       help="Adam beta1, in [0, 1) (beta2 is 0.999) (default %(default)s)")
    group.add_argument("--batch_size", type=positive_int, default=QuickDefault(1, 32),
                       help="images per step (per process under torchrun) (default %(default)s)")
    group.add_argument("--n_epochs", type=non_negative_int, default=QuickDefault(100, 7),
                       help="epochs at the initial lr (default %(default)s)")
    group.add_argument("--n_epochs_decay", type=non_negative_int, default=QuickDefault(100, 17),
                       help="epochs of linear decay to zero after that (default %(default)s)")
    group.add_argument("--lr_policy", default="linear",
                       choices=("linear", "step", "plateau", "cosine"),
                       help="lr schedule: linear (constant, then linear decay), step (x0.1 every "
                            "--lr_decay_iters epochs), plateau (x0.2 when the epoch's mean "
                            "generator loss stalls 5 epochs; the reference's pix2pix passes its "
                            "scheduler a constant 0 instead, which cuts the lr after epoch 7 "
                            "and every 6 epochs after it), cosine (the reference's "
                            "CosineAnnealingLR with T_max --n_epochs: down to 0 over "
                            "--n_epochs, then, a cosine, up "
                            "again during --n_epochs_decay) (default %(default)s)")
    group.add_argument("--lr_decay_iters", type=positive_int, default=50,
                       help="epochs between step decays (default %(default)s)")
    group.add_argument("--lr_step_at", default="epoch_end", choices=("epoch_end", "epoch_start"),
                       help="when the lr schedule steps: epoch_end, as PyTorch orders it and "
                            "the reference's train.py did until about 2020 (--lr for all "
                            "--n_epochs epochs; the last epoch one decay step above 0), or "
                            "epoch_start, as its train.py does since: one step earlier, so the "
                            "decay starts in epoch --n_epochs and the last epoch trains at lr 0 "
                            "(with --n_epochs_decay 0, the last of --n_epochs) "
                            "(default %(default)s)")
    group.add_argument("--epoch_count", type=positive_int, default=1,
                       help="number of the first epoch: epochs EPOCH_COUNT .. N_EPOCHS + "
                            "N_EPOCHS_DECAY are trained, as in the reference; with "
                            "--continue_train the saved state's epoch is used instead, and "
                            "its lr schedule counts from the saved run's --epoch_count (one "
                            "line says so when this one differs; not with networks saved "
                            "without a state, see --continue_train) (default %(default)s)")
    group.add_argument("--continue_train", action="store_true",
                       help="resume from CHECKPOINTS_DIR/NAME/{--epoch}_*.pth: weights, "
                            "optimizers, lr schedule, RNG and position in the epoch; every "
                            "option this command line leaves out is the run's, from its "
                            "train_opt.txt (one line names them; not the per-invocation ones: "
                            "--resume_or_start, --overwrite, --name, --checkpoints_dir, "
                            "--suffix, --epoch, --load_iter, threads, device and "
                            "--gpu_ids, --graphs, --channels-last, --log-every and "
                            "--print_freq, --verbose). Networks without a training state (the "
                            "reference implementation's {--epoch}_net_G.pth and _net_D.pth) "
                            "are loaded as the reference loads them: fresh optimizers and lr "
                            "schedule from --epoch_count")
    group.add_argument("--resume_or_start", action="store_true",
                       help="for job scripts that are requeued: --continue_train where "
                            "CHECKPOINTS_DIR/NAME holds a checkpoint {--epoch} to resume, a "
                            "new run otherwise (--continue_train alone refuses a folder "
                            "without one: a mistyped --name must not start over)")
    group.add_argument("--overwrite", action="store_true",
                       help="start a new run in a CHECKPOINTS_DIR/NAME that holds another "
                            "run's checkpoints (refused without it, so a forgotten "
                            "--continue_train loses nothing): that run's loss_log.csv (and "
                            "the loss_log.N.csv set aside beside it) and web/ page, loss plot "
                            "and sample images are removed at once, and "
                            "all of its checkpoint sets (*_checkpoint.json and the files each "
                            "lists, latest_*, iter_*_*, EPOCH_*) once the new run's first "
                            "checkpoint is saved (one line says how many); other files in "
                            "the folder stay")
    group.add_argument("--save_epoch_freq", type=positive_int, default=5,
                       help="also keep EPOCH_net_G.pth, EPOCH_net_D.pth and "
                            "EPOCH_train_state.pth every this many epochs and after the last "
                            "one (default %(default)s)")
    group.add_argument("--save_latest_freq", type=positive_int, default=QuickDefault(5000, 4000),
                       help="save latest_* every this many training images (at the step "
                            "that crosses a multiple of it, where the reference's count must "
                            "land on one: a batch size that does not divide it skips saves "
                            "there), and at the end "
                            "of every epoch (the reference saves latest_* there only with the "
                            "--save_epoch_freq saves), so a crash loses at most one epoch or "
                            "this many images, plus the steps trained while the newest save was "
                            "written in the background (default %(default)s)")
    group.add_argument("--display_freq", type=positive_int, default=QuickDefault(400, 2000),
                       help="save a sample (real_A, fake_B, real_B) and refresh the loss plot "
                            "and HTML page every this many training images (at the step that "
                            "crosses a multiple of it, as --save_latest_freq) "
                            "(default %(default)s)")
    fast = _argument_group(parser, "fastp2p execution")
    fast.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                      help="bf16 = bf16 autocast without loss scaling (CUDA only) "
                           "(default %(default)s)")
    fast.add_argument("--graphs", action=argparse.BooleanOptionalAction, default=None,
                      help="capture the whole D+G step as one CUDA graph and replay it (default: "
                           "on for a single CUDA process, off otherwise; needs fixed batch "
                           "shapes, so the last partial batch of an epoch is dropped)")
    fast.add_argument("--channels-last", dest="channels_last", action="store_true",
                      help="channels-last (NHWC) weights and activations: faster on tensor "
                           "cores, and measured 1.13-1.19x per step for CPU training on a "
                           "2-core AMD EPYC (benchmarks/NOTES.md; off by default: measured "
                           "on that one CPU only)")
    fast.add_argument("--log-every", dest="log_every", type=positive_int, default=None,
                      help="read the losses from the device every this many steps: progress "
                           "line, loss_log.csv, trackers and the NaN/Inf check; under torchrun "
                           "a stop or checkpoint request acts there, on every rank (default "
                           "50; the reference's --print_freq sets it in images)")


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("testing (reference names)")
    group.add_argument("--results_dir", type=given_path, default="./results",
                       help="results go to RESULTS_DIR/NAME/PHASE_EPOCH (with --load_iter N: "
                            "PHASE_EPOCH_iterN, as the reference) (default %(default)s)")
    group.add_argument("--phase", type=plain_name, default="test",
                       help="which split to translate: train, val, test (default %(default)s)")
    group.add_argument("--eval", action=argparse.BooleanOptionalAction,
                       default=QuickDefault(False, True),
                       help="run the generator in eval mode (BatchNorm running statistics, no "
                            "dropout); without it, as in the reference, test uses batch "
                            "statistics and dropout, which only matches training at batch 1: "
                            "the quick profile trains at batch 32, hence on without --dataroot "
                            "(default %(default)s)")
    group.add_argument("--num_test", type=positive_int, default=50,
                       help="translate at most this many images (default %(default)s)")
    group.add_argument("--aspect_ratio", type=positive_float, default=1.0,
                       help="as the reference's test.py, each saved H x W image is resized "
                            "(bicubic) when this is not 1: above 1 to width H and height "
                            "W*ASPECT_RATIO, below 1 to width H/ASPECT_RATIO and height W; "
                            "sides up to 32768 pixels (default %(default)s: saved as the "
                            "generator produces it)")
    group.add_argument("--channels-last", dest="channels_last",
                       action=argparse.BooleanOptionalAction, default=True,
                       help="run the generator and its inputs in channels-last (NHWC): the "
                            "faster layout for tensor cores (CPU float32 inference computes "
                            "channels-last either way); the images are the same up to float "
                            "rounding (default: on)")
