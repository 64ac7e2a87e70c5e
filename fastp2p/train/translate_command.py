"""``fastp2p test``: translate a split with a trained generator, as the reference's test.py.

Writes ``RESULTS_DIR/NAME/PHASE_EPOCH/images/{name}_{real_A,fake_B,real_B}.png`` and an
``index.html`` beside them (``name``: the A image's file stem, or its path under the split's
folder when an earlier image took that stem; shortened with a hash past 200 bytes), then
prints the mean L1 of fake_B to real_B next to two baselines (``fastp2p.train.evaluation``),
also written to ``scores.json`` beside the page (``fastp2p.train.score_file``).
As in the reference: batch size 1, pairs in order, no flipping, and the generator stays in
train mode (batch statistics, dropout as noise) unless ``--eval`` (the default without
``--dataroot``, whose quick profile trains at batch 32).

Images without a target (``--dataset_mode single``, which the reference's ``--model test``
implies): every image under DATAROOT itself, saved as ``{name}_{real,fake}.png`` (the
reference's test model's names; ``name`` relative to DATAROOT), with no L1 to print;
``--model_suffix`` loads ``EPOCH_net_G{SUFFIX}.pth``.

The page lists only triplets the run that wrote it wrote whole: an earlier run's page is
removed before the first image is written (a folder at its name is refused first), and the
page is written when the run ends. Ctrl-C, SIGTERM or SIGHUP (as in training) stops after the image
being written (or at once while it waits for the next one, which may never come), titles the
page partial and exits with 128 + the signal; a second one before that image is whole stops at
once, writes no page, says the results are partial and exits with 128 + its own signal. Once the
images are done (all of them, or the one a stop waited for), stop requests are ignored until the
command returns (the ``fastp2p`` process: until it ends; a caller of ``fastp2p.cli.main(argv)``
gets its own handlers back): the loader's workers are stopped (no image past the last one is
waited for; a worker that dies then, prefetching one, changes nothing), the page is still
written and the lines printed, and a run that wrote every image is complete (exit 0). An error
before then (a full disk, named in one line with the file; a data loader worker that died)
writes no page and says the results are partial; a page that cannot be written, that the images
are whole; a scores.json that cannot be written, after the scores are printed (exit 1).
``images/`` may then hold an incomplete triplet or an earlier run's images, which no page lists,
until a later run writes those names again; a run that ends counts them in one line (deleting
none).
Temporary files of killed runs (``.NAME.tmp-PID.png``, regular files only) are removed by the
next run into the folder. Run from a thread other than the main one (which alone receives
signals), the command handles no stop request.

One run at a time writes a results folder: a run holds ``PHASE_EPOCH/.lock`` (train's
RunFolderLock) from its set-up to its end, and a second run into that folder stops at once in
one line with exit code 75 (EXIT_IN_USE), before it reads any data.

Test runs in one process, on one device: under torchrun (WORLD_SIZE > 1) it is refused in one
line, before any other check and before torch loads, since each process would translate every
image into the same files; each node's first process (LOCAL_RANK 0) says it, with ``rank N: ``
off rank 0, as train says its refusals, and every process exits 2.

A results folder may be shared by several users, so nothing is written through a symbolic link
one of them planted there: the images and the page replace a link at their names (a rename),
and before anything is written a linked ``PHASE_EPOCH`` or ``images`` folder, or a
``RESULTS_DIR/NAME`` that is a link another user made (your own is followed, as a run folder's
is), is refused in one line (exit 1); so are linked tracker folders in the run folder.
"""
import argparse
import contextlib
import os
import signal
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from fastp2p.command_errors import EXIT_IN_USE, print_error
from fastp2p.train.options import (QuickDefault, add_model_arguments, add_test_arguments,
                                   describe_defaults)
from fastp2p.train.reference_options import add_reference_arguments
from fastp2p.train.result_names import names_root, output_name, single_heading
from fastp2p.train.run_folder_lookup import (name_run_folder, resolve_as_test,
                                           take_generator_options)
from fastp2p.train.trackers import add_tracker_arguments

DESCRIPTION = """\
Translate a split (default: test) with CHECKPOINTS_DIR/NAME/EPOCH_net_G.pth and write the
real_A / fake_B / real_B images and an HTML index to RESULTS_DIR/NAME/PHASE_EPOCH/, and print
the mean L1 of fake_B to real_B beside two baselines: the train split's mean image (a constant
answer) and, when A and B have the same channels, real_A itself (also in scores.json there).
With --dataset_mode single (implied by the reference's --model test; --model_suffix S loads
EPOCH_net_GS.pth) the images under DATAROOT itself are translated without a target: real and
fake images, no L1. The generator's options (--netG, --ngf, --norm, --no_dropout, --input_nc,
--output_nc) that the command line leaves out are the run's, from CHECKPOINTS_DIR/NAME/
train_opt.txt where it has one (one line names them; given ones win; the generator's file is
checked first, and one saved with others is refused naming them); without that file the
defaults apply (without --dataroot the quick profile's, matching `fastp2p train` without
it). A --direction, --dataroot (none: the embedded dataset) or image size other than the
run's is used as given, with one line each naming it. As the reference's test means to,
each whole image is read at --crop_size (--load_size follows it unless given; the reference
keeps 256 even for another --crop_size): a DATAROOT packed at a larger load size is resized
again to it; a --load_size above --crop_size asks for random crops instead.
Every option of the reference's test.py is accepted (`python test.py --model pix2pix ...` runs
as `fastp2p test --model pix2pix ...`); those that mean nothing here are named in one line.
index.html lists only whole triplets of the run that wrote it (an earlier run's page is removed
first). Ctrl-C, SIGTERM, SIGHUP or SIGXCPU stops after the current image (at once while it waits
for the next one), with index.html titled partial (exit 128 + the signal); a second one before
that image is written stops at once, with no index.html (exit 128 + that signal); once the
images are written, further ones are ignored until the command ends (a run that wrote them all
exits with 0). After an error there is no index.html."""

EPILOG = f"""\
exit codes: 0 translated every image asked for, 1 failed (a message says why), 2 options
refused, {EXIT_IN_USE} RESULTS_DIR/NAME/PHASE_EPOCH in use by another fastp2p test run (it holds its
.lock; try again later, or pick another --results_dir), or DATAROOT/PHASE being written by
fastp2p pack (try again later), 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 152
SIGXCPU)."""

# Training's model options that the reference's test.py also accepts and that mean nothing to
# a test, with why: its help says so (they are not "ignored reference options": train uses them).
NOT_USED_BY_TEST = {**dict.fromkeys(("netD", "n_layers_D", "ndf"), "it builds no discriminator"),
                    **dict.fromkeys(("init_type", "init_gain"), "the weights are loaded")}
IMAGES = "images"  # RESULTS_DIR/NAME/PHASE_EPOCH/images: the translated triplets
SINGLE = ("real", "fake")  # the images of --dataset_mode single, as the reference names them


def register(commands) -> None:
    from fastp2p.data import add_data_arguments

    parser = commands.add_parser("test", help="translate a split with a trained generator",
                                 description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, single_images=True)
    # The reference's test options: load straight at the crop size (load_size = crop_size).
    parser.set_defaults(load_size=QuickDefault(256, 64), crop_size=QuickDefault(256, 64))
    describe_defaults(parser, ("crop_size",))
    for action in parser._actions:
        if action.dest in ("no_flip", "serial_batches"):
            action.help += " (always on in fastp2p test, as in the reference's test)"
        elif action.dest == "load_size":
            action.help += (" (default: --crop_size, whole images; a larger one resizes to "
                            "it, then takes a random --crop_size crop)")
    add_model_arguments(parser, torchrun=False)
    for action in parser._actions:
        if action.dest in NOT_USED_BY_TEST:
            action.help += f" (not used by test: {NOT_USED_BY_TEST[action.dest]})"
    add_test_arguments(parser)
    add_tracker_arguments(parser, "the results folder's images and index.html")
    add_reference_arguments(parser, "test")
    # given_options: the options the command line gives (fastp2p.cli finds them), so that the
    # generator's others are taken from the run
    parser.set_defaults(run=run, given_options=None)


def run(args: argparse.Namespace) -> int:
    from fastp2p.optional_packages import MissingPackage, require_packages
    from fastp2p.train.early_refusals import refused_at_once, refused_under_torchrun

    code = refused_under_torchrun("test", _refuse_torchrun)  # first, before any other check
    if code is not None:
        return code
    try:
        require_packages(("PIL", "tqdm") + (() if args.dataroot else ("skimage",)),
                         extra="data")
    except MissingPackage as err:
        return _refused(err)
    from fastp2p.train.reference_options import refuse_unsupported_values
    code = refused_at_once(args, "test")  # a typo needs no torch: said at once
    if code is not None:
        return code
    try:   # nor does a --model, --gpu_ids or --device fastp2p cannot honour, as train's
        refuse_unsupported_values(args, "test")
    except ValueError as err:
        return _refused(err)
    given = vars(args).pop("given_options", None)
    not_found = name_run_folder(args, given, register)
    if not_found:
        return _failed(not_found)
    taken, warning = take_generator_options(args, given, register)
    if taken:
        print(taken)
    if warning:   # a damaged train_opt.txt: the defaults stand in for what it lost
        print(warning, file=sys.stderr)
    code = _refused_before_torch(args)
    if code is not None:
        return code
    from fastp2p.stops_deferred import import_torch
    import_torch("torch")  # first, whole: a Ctrl-C inside it aborted the process or was lost
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.train.cpu_threads import apply_thread_choice, choose_threads
    from fastp2p.train.distributed import resolve_device
    from fastp2p.train.image_sizes import aspect_ratio_size, check_options_fit_unet
    from fastp2p.train.networks import check_networks_fit_memory, check_op_settings
    from fastp2p.train.reference_options import apply_reference_options
    from fastp2p.train.run_lock import RunFolderBusy
    from fastp2p.train.stop_requests import StopRequests
    from fastp2p.train.trackers import check_trackers_installed

    resolve_as_test(args)
    # The reference's test-time overrides: one image at a time, in order, unflipped.
    args.no_flip, args.serial_batches = True, True
    try:
        ignored = apply_reference_options(args, "test")
        check_trackers_installed(args)
        device = resolve_device(args.device)
        generator = _generator_of_options(args)
        if "crop" in args.preprocess:  # the saved images' size is known: refuse before work
            aspect_ratio_size(args.crop_size, args.crop_size, args.aspect_ratio)
        # before the checkpoint is looked for: no file makes a generator past the memory fit
        check_networks_fit_memory(args, device, training=False, generator=generator)
    except ValueError as err:
        return _refused(err)
    try:  # an error of the file or of other model options exits 1, as a load always did
        check_op_settings(device, inference=True)   # exit code 1, as train's
        saved = _saved_generator(args, generator)
    except (ValueError, OSError) as err:
        return _failed(err)
    try:
        check_options_fit_unet(args)
        threads = choose_threads(device.type, args.num_threads)   # (LOCAL_WORLD_SIZE's check)
    except ValueError as err:
        return _refused(err)
    if ignored:
        print(ignored)
    apply_thread_choice(threads)
    with contextlib.ExitStack() as resources:   # the loader's workers, trackers, the lock
        try:
            loader, netG, weights, out_dir, trackers = _set_up(args, device, threads, resources,
                                                               saved)
        except (RunFolderBusy, PackFolderBusy) as err:  # its results folder, or its split
            print_error("test", err)                    # being packed: try again later
            return EXIT_IN_USE
        except (ValueError, OSError) as err:   # ValueError: a DataError too
            return _failed(err)
        weights_state = _weights_state(args, saved)
        # the file's tensors (the meta generator took them too), loaded into netG: not kept
        # through the translation
        del saved, generator
        # The stop requests are handled until the command returns: closing the loader and the
        # trackers inside them, a request arriving then is ignored instead of cutting that short
        # (a traceback at exit, loader workers left to the interpreter's exit hooks).
        second_request = f"a second stop request: stopped at once; {_partial(out_dir)}"
        # checkpoint_requests: a scheduler's warning (SIGUSR1 / SIGUSR2, which kill by
        # default) is said and ignored; test has nothing to save, its SIGTERM stops it
        with StopRequests(second_request, checkpoint_requests=True) as stops:
            with resources.pop_all():
                try:
                    translated = _translate(args, netG, loader, device, out_dir, trackers, stops)
                except (ValueError, OSError) as err:
                    return _failed(err)
                unwritten = _scores_not_written(args, translated, weights, out_dir,
                                                weights_state)
            code = _report(translated, weights, out_dir, weights_state.words(),
                           scores_written=unwritten is None)
            # the images and page are whole, so their scores are printed first: then the error
            return code if unwritten is None else _failed(unwritten)


def _refused_before_torch(args) -> int | None:
    """The exit code of a test refused before torch loads (seconds, for a mistyped --phase), as
    train refuses it, after its one line: 2 for --model options fastp2p cannot honour (said
    before the data, as train says them), 1 for a --phase split that is missing or holds no
    image, EXIT_IN_USE for one a ``fastp2p pack`` is writing; None when it may go on. The
    split is looked at only where the checkpoint is there (its manifest or generator's file): a
    missing checkpoint (a --name typo, a run not trained yet) is said first, as the load says
    it after torch loads."""
    from fastp2p.data.create import refuse_unreadable_split
    from fastp2p.data.errors import DataError
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.train.reference_options import resolve_test_model

    try:
        resolve_test_model(args)   # (--dataset_mode single: no split to look at)
    except ValueError as err:
        return _refused(err)
    if not _holds_the_checkpoint(args):
        return None
    try:
        refuse_unreadable_split(args, args.phase)
    except PackFolderBusy as err:
        print_error("test", err)
        return EXIT_IN_USE
    except ValueError as err:   # a DataError too; said as the dataset says it after torch loads
        return _failed(DataError(f"{err}{_single_mode_hint(args)}"))
    return None


def _holds_the_checkpoint(args) -> bool:
    """Whether the run folder holds the set of --epoch / --load_iter (its manifest or its
    generator's file, as a resume counts it), looked for without torch; False where --suffix is
    refused (said as the options are checked)."""
    from fastp2p.train.reference_options import checkpoint_label, run_name
    from fastp2p.train.resuming import holds_checkpoint

    try:
        folder = Path(args.checkpoints_dir) / run_name(args)
    except ValueError:
        return False
    return holds_checkpoint(folder, checkpoint_label(args))


def _refuse_torchrun(processes: int) -> None:
    """Test translates in one process: under torchrun each of its processes would translate
    every image into the same files and page, so a job of several is refused."""
    if processes > 1:
        raise ValueError(f"fastp2p test translates in one process, on one device, but torchrun "
                         f"started {processes} (WORLD_SIZE={processes}), each of which would "
                         "translate every image into the same folder; run it without torchrun "
                         "(--device cuda:N or --gpu_ids N picks the GPU)")


def _generator_of_options(args):
    """The generator the model options build, on the meta device (no memory, no weights): what
    the file to be loaded is checked against before anything else, and whose parameters the
    memory check counts. ValueError for a --netG that names none."""
    import torch

    from fastp2p.train.networks import generator_from_options

    with torch.device("meta"):
        return generator_from_options(args, torch.device("meta"), random_init=False)


def _saved_generator(args, generator):
    """(the run's CheckpointFolder, what its ``read_network`` read: the generator's file of
    --epoch / --load_iter and its state_dict, and the manifest it was loaded by, None without
    one), once the state_dict was found to fit ``generator`` (``_generator_of_options``).
    Checked before the data and the image sizes: where other model options trained the run,
    their checks would ask for changes one at a time (a --load_size, then the --netG of a
    --crop_size) before the load named the options the file was trained with; and where there
    is no such file (a --name typo, a run not trained yet), the sizes of the default --netG
    would be checked in its place, so that is said first (MissingCheckpoint). ValueError or
    OSError, as the load raises them."""
    from fastp2p.train.checkpoints import CheckpointFolder

    advice = ("test another saved --epoch, or get a good one by training again: `fastp2p "
              f"train --name {args.name} --continue_train --epoch N` from an intact set N "
              "writes new latest_* files")
    folder = CheckpointFolder(args.checkpoints_dir, args.name, advice)
    path, state, manifest = folder.read_network_by(args.epoch, "G", args.model_suffix)
    folder.load_network(generator, args.epoch, "G", (path, state))
    return folder, (path, state), manifest


def _random_crop_note(args) -> str | None:
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


def _set_up(args, device, threads, resources: contextlib.ExitStack, saved):
    """(loader, generator with its weights loaded, the weights' file, results folder,
    trackers); ``saved``: ``_saved_generator``'s (folder, file read, manifest). ``resources`` closes
    the loader and the trackers."""
    import torch

    from fastp2p.data import DataError, create_dataloader, create_dataset
    from fastp2p.data.create import packed_mode_note, packed_resize_note
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.data.folders import OwnSizes
    from fastp2p.train.image_sizes import check_images_fit_unet
    from fastp2p.train.networks import generator_from_options
    from fastp2p.train.reference_options import describe_networks, results_folder_name
    from fastp2p.train.saved_options import OPTIONS_FILE
    from fastp2p.train.trackers import close_trackers, open_trackers
    from fastp2p.train.unet_names import unet_levels

    torch.manual_seed(args.seed)
    out_dir = Path(args.results_dir) / args.name / results_folder_name(args)
    _refuse_linked_results(out_dir)
    _lock_results(out_dir, resources)   # first: a second run says only that it is one
    # The reference's test reads each whole image at --crop_size: a split packed at a larger
    # size is resized again to it, not cropped at random, unless --load_size asks for crops.
    single = args.dataset_mode == "single"   # DATAROOT's own images: no split, no pack
    notes = () if single else (packed_resize_note(args, args.phase),
                               packed_mode_note(args, args.phase))
    for line in (*notes, _random_crop_note(args)):
        if line:
            print(line)
    # one image at a time, as the reference's test.py: each at its own size where the U-Net
    # takes it (--preprocess none, scale_width)
    try:
        dataset = create_dataset(args, args.phase, own_sizes=OwnSizes(
            2 ** unet_levels(args.netG), f"--netG {args.netG}"))
    except PackFolderBusy:
        raise   # the split is there, being packed: no hint, and its exit code kept
    except DataError as err:
        raise DataError(f"{err}{_single_mode_hint(args)}") from None
    check_images_fit_unet(args, dataset)
    print(threads.summary)   # after the data's refusals, as train: no line before an error
    loader = create_dataloader(dataset, 1, shuffle=False,
                               num_workers=threads.loader_workers, seed=args.seed)
    resources.callback(loader.close)
    netG = generator_from_options(args, device, random_init=False)   # the load sets every weight
    folder, read, _ = saved
    weights = folder.load_network(netG, args.epoch, "G", read)
    for line in _trained_otherwise_notes(args, folder.path / OPTIONS_FILE, single):
        print(line)
    if args.verbose:
        print(describe_networks(G=netG))
    trackers = open_trackers(args, _tracker_folder(args, out_dir), "test")
    resources.callback(close_trackers, trackers)
    if args.eval:
        netG.eval()
    return loader, netG, weights, out_dir, trackers


def _trained_otherwise_notes(args, options_file: Path, single: bool) -> list:
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


def _lock_results(out_dir: Path, resources: contextlib.ExitStack) -> None:
    """Hold ``out_dir``'s lock (``.lock``, as a training run holds its run folder's) until
    ``resources`` closes, so that a second run into the same results folder stops at once
    (RunFolderBusy) instead of both writing images/ and each its own page over the other's."""
    from fastp2p.train.run_lock import RunFolderLock

    lock = RunFolderLock(out_dir, command="fastp2p test", option="--results_dir")
    warning = lock.acquire()
    resources.callback(lock.release)
    if warning:
        print(warning, file=sys.stderr)


def _single_mode_hint(args) -> str:
    """What to add to the error of a split missing where DATAROOT holds images itself: these
    may be images without targets (the reference's datasets/facades/testB), which --dataset_mode
    single translates as they are."""
    from fastp2p.data.folders import images_placed_above

    if (args.dataset_mode == "single" or not args.dataroot
            or not images_placed_above(Path(args.dataroot) / args.phase)):
        return ""
    return "; or, to translate them without targets, pass --dataset_mode single"


def _refused(err: Exception) -> int:
    """Say in one line why the options are refused, before anything ran; its exit code."""
    print_error("test", err)
    return 2


def _failed(err: Exception) -> int:
    """Say in one line why the command failed (a full disk, a read-only results folder, a bad
    image or option); its exit code."""
    if isinstance(err, OSError):   # (imports torch: a refusal before it loads is no OSError)
        from fastp2p.train.checkpoints import described_with_disk_advice
        err = described_with_disk_advice(err)
    print_error("test", err)
    return 1


def _report(translated, weights: Path, out_dir: Path, weights_state: str = "",
            scores_written: bool = True) -> int:
    """Print what the run did, its L1 scores and where its page and scores.json are (not
    scores.json where it was not written: ``scores_written``); its exit code (128 + the
    stop's signal).
    ``weights_state``: what ``_weights_state`` says of the generator's file ``weights``."""
    from fastp2p.data.errors import counted
    from fastp2p.train.score_file import SCORES_FILE

    print(f"translated {_how_many(translated)} image(s) with {weights}{weights_state}"
          f"{_cut_note(translated)}")
    if translated.scores is not None:
        print(translated.scores.report())
    if translated.not_written:
        print(f"{IMAGES}/ also holds {counted(translated.not_written, 'file')} this run did not "
              "write (an earlier run's, kept); index.html lists only this run's")
    print(f"open: {(out_dir / 'index.html').resolve()}")
    if scores_written:   # for a sweep's collector to read
        print(f"scores: {(out_dir / SCORES_FILE).resolve()}")
    if translated.stopped_by is None:
        return 0
    print(f"{signal.Signals(translated.stopped_by).name} received: stopped after "
          f"{translated.count} of {translated.total} images; the results are partial, and "
          "index.html says so", file=sys.stderr)   # a stop, as train's: not a result
    return 128 + translated.stopped_by


def _weights_state(args, saved) -> "_WeightsState":
    """The point of the run the generator loaded (``saved``: ``_saved_generator``'s) was saved
    at, as the manifest it was loaded by (the step; not one read later, which a save since
    would have replaced) and its training state (the epoch) record it (none for the
    reference's files or --model_suffix's file of another tool), and whether a training holds
    the run's lock now (latest_* may have moved on since)."""
    from fastp2p.train.run_lock import held_now

    folder, _, manifest = saved
    return _WeightsState(_saved_at(folder, args.epoch, manifest), held_now(folder.path))


@dataclass
class _SavedPoint:
    """Where in its run a checkpoint was saved: at ``step``, in (or, ``epoch_complete``, at
    the end of) ``epoch``; both None where its training state does not say."""
    step: int
    epoch: int | None = None
    epoch_complete: bool | None = None

    def words(self) -> str:
        """"after epoch 3, step 120", "in epoch 4, step 130" or "step 130"."""
        if self.epoch is None:
            return f"step {self.step}"
        return f"{'after' if self.epoch_complete else 'in'} epoch {self.epoch}, step {self.step}"


@dataclass
class _WeightsState:
    """``_weights_state``'s: ``saved_at`` (a _SavedPoint, None where unknown) and whether its
    run is training (``run_training``)."""
    saved_at: _SavedPoint | None
    run_training: bool

    def words(self) -> str:
        """" (after epoch 3, step 120; its run is still training)", or "" where nothing is
        known: the end line's."""
        said = [self.saved_at.words()] if self.saved_at else []
        if self.run_training:
            said.append("its run is still training")
        return f" ({'; '.join(said)})" if said else ""

    def record(self) -> dict:
        """The same for scores.json (``fastp2p.train.score_file``)."""
        saved_at = None if self.saved_at is None else asdict(self.saved_at)
        return {"saved_at": saved_at, "run_training": self.run_training}


def _saved_at(folder, label, manifest: dict | None) -> _SavedPoint | None:
    """Where in its run ``folder``'s set ``label`` was saved: ``manifest``'s step, and the
    epoch as its training state records it, where it says (not one of another save, whose
    rename is pending or which came since; a regular file; readable): its small records only
    are read (memory-mapped, weights only: the optimizers' tensors, most of the file, are
    never read; not checked against the manifest's SHA-256, which would read it all); None
    without a manifest."""
    import warnings

    import torch

    from fastp2p.checkpoint_names import TRAIN_STATE_SUFFIX
    from fastp2p.train.position import epoch_reached

    if manifest is None:
        return None
    step_only = _SavedPoint(manifest["step"])
    path = folder.file(label, TRAIN_STATE_SUFFIX)
    # Any error: the state only names the epoch, and a damaged file raises nearly anything
    # (a flipped byte: AttributeError from torch's own load); weights_only runs none of its
    # code. Its warnings (a damaged zip's) are not the test's either.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a link is not followed out of the run folder, nor a FIFO opened (it would block)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return step_only
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        progress = state["progress"] if state["generation"] == manifest["generation"] else {}
        epoch, batches = progress["epoch"], progress["epoch_batches"]
        complete = progress["epoch_complete"]
    except Exception:
        return step_only
    if not (type(epoch) is int and type(batches) is int and type(complete) is bool):
        return step_only
    return _SavedPoint(step_only.step, *epoch_reached(epoch, batches, complete))


def _how_many(translated) -> str:
    """"N", or "N of M" when --num_test left images of the listing out."""
    if translated.listed > translated.total:
        return f"{translated.count} of {translated.listed}"
    return str(translated.count)


def _cut_note(translated) -> str:
    """What --num_test left out, which the default (50, the reference's) does without a word
    to a larger folder; '' when it left nothing out."""
    if translated.listed <= translated.total:
        return ""
    return f" (--num_test {translated.total}; --num_test {translated.listed} for all)"


def _refuse_linked_results(out_dir: Path) -> None:
    """NotAPlainFile (a ValueError) if a folder the results are written into
    (``RESULTS_DIR/NAME``, ``PHASE_EPOCH``, its ``images``) is a symbolic link another user
    made (your own are followed)."""
    from fastp2p.atomic_files import refuse_linked_folder

    refuse_linked_folder(out_dir.parent, advice="remove it, or pick another --results_dir")
    for folder in (out_dir, out_dir / IMAGES):
        refuse_linked_folder(folder)


def _tracker_folder(args, out_dir: Path) -> Path:
    """Where --tensorboard / --use_wandb write: the run's folder CHECKPOINTS_DIR/NAME, as in
    training (``tensorboard/test`` beside ``tensorboard/train``, so one TensorBoard shows both;
    W&B's ``wandb/``). When that cannot be written (a read-only copy of a trained model), or
    when it or a tracker folder in it is a symbolic link another user made (testing a
    colleague's model through their link: nothing is written through it), the results folder
    ``out_dir``, said in one line."""
    run_folder = Path(args.checkpoints_dir) / args.name
    if not (args.tensorboard or args.use_wandb):
        return run_folder
    import tempfile

    from fastp2p.atomic_files import NotAPlainFile, refuse_linked_folder
    from fastp2p.train.checkpoints import describe_os_error
    from fastp2p.train.trackers import TENSORBOARD, WANDB, refuse_linked_tracker_folders

    try:
        refuse_linked_folder(run_folder)
        refuse_linked_tracker_folders(args, run_folder, "test")
    except NotAPlainFile as err:
        print(f"note: the trackers do not write in {run_folder} ({err}); they write under "
              f"{out_dir} instead")
        return out_dir
    probe = run_folder / TENSORBOARD / "test" if args.tensorboard else run_folder / WANDB
    try:
        probe.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        print(f"note: the trackers cannot write in {run_folder} ({describe_os_error(err)}); "
              f"they write under {out_dir} instead")
        return out_dir
    return run_folder


@dataclass
class _Translated:
    """What ``_translate`` did: ``count`` of ``total`` images written whole, their L1Scores
    (None when there were none), the signal that stopped it early (None: it ran to the end),
    how many images the data held (``listed``; more than ``total`` when --num_test cut them),
    and how many files in images/ it did not write (``not_written``: an earlier run's)."""
    count: int
    total: int
    scores: object
    stopped_by: int | None
    listed: int = 0
    not_written: int = 0


def _translate(args, netG, loader, device, out_dir, trackers, stops) -> _Translated:
    """Write the image triplets into out_dir/images and index.html beside them.

    ``_begin_results`` removes an earlier run's page before the first image is written; the
    page is written at the end and lists this run's whole triplets only. A stop request
    (``stops``: StopRequests) ends the run after the image being written (or the wait for the
    next one), with a page titled as partial; once the images are done, later requests are
    only recorded, so a complete run stays complete, and the loader's workers are stopped. An
    error before then (a full disk, an unreadable image, a data loader worker that died) raises
    ValueError saying how far it got and that no page was written; a page that cannot be
    written, that the images are whole."""
    import torch

    from fastp2p.train.checkpoints import describe_os_error
    from fastp2p.train.reports import write_html

    images_dir = _begin_results(out_dir)
    total = min(len(loader), args.num_test)
    sections = []   # (name, its images) of each whole triplet written
    try:
        with torch.no_grad():
            scores = _write_triplets(args, netG, loader, device, images_dir, trackers, total,
                                     sections, stops)
    except (OSError, ValueError, RuntimeError) as err:
        reason = _why_the_images_stopped(err)
        if reason is None:   # a bug: its traceback
            raise
        written = f"{len(sections)} of {total} images written, "
        raise ValueError(f"{reason}; {_partial(out_dir, written)}") from err
    finally:   # what a second request would cut short is done (or failed)
        stops.hold()
        # No later batch is used: the workers prefetching them stop now, before one can die
        # and torch report it from the middle of the page or the report (a traceback).
        loader.close()
    # a stop request during the last image changes nothing either: the results are whole
    stopped_by = stops.signal_number if len(sections) < total else None
    try:
        write_html(out_dir / "index.html", _page_title(args, stopped_by, len(sections), total),
                   sections)
    except OSError as err:
        raise ValueError(f"{describe_os_error(err)}; the images are whole ({len(sections)} of "
                         f"{total} written, in {images_dir}): only their page failed") from err
    return _Translated(len(sections), total, scores, stopped_by, len(loader),
                       _not_written(images_dir, sections))


def _scores_not_written(args, translated: _Translated, weights: Path, out_dir: Path,
                        weights_state: _WeightsState) -> ValueError | None:
    """Write ``out_dir/scores.json`` (``fastp2p.train.score_file``): the scores printed and
    where in its run the generator's file ``weights`` was saved (``weights_state``), for a
    script to read. None once written; else a ValueError saying why and that the images and
    their page are whole."""
    from fastp2p.train.checkpoints import describe_os_error
    from fastp2p.train.score_file import SCORES_FILE, scores_record, write_scores

    try:
        record = scores_record(args, translated, weights, weights_state.record())
        write_scores(out_dir / SCORES_FILE, record)
    except OSError as err:
        return ValueError(f"{describe_os_error(err)}; the images and index.html are whole: only "
                          f"{SCORES_FILE} failed")
    return None


def _not_written(images_dir: Path, sections) -> int:
    """How many entries of ``images_dir`` are none of the files ``sections`` lists: an earlier
    run's, which a run with fewer images or other names leaves beside its own. Said, not
    deleted: they may be all that is left of that run."""
    written = {Path(path).name for _, images in sections for _, path in images}
    with os.scandir(images_dir) as entries:
        return sum(entry.name not in written for entry in entries)


def _why_the_images_stopped(err: Exception) -> str | None:
    """One line for an error that stopped the images: data loader workers that could not all
    be started or whose batches could not be received (a limit on open files, as train says
    it), a failed write or read (OSError; one
    for a limit on open files says what to raise, and a disk out of inodes is said as such: the
    errno's words are those of a disk out of bytes), a bad image or a planted link (ValueError:
    DataError, NotAPlainFile), a data loader worker that died (torch's RuntimeError); None for
    any other RuntimeError."""
    from fastp2p.data.loader import LoaderWorkersFailed
    from fastp2p.train.checkpoints import describe_os_error, limit_advice
    from fastp2p.train.loader_failures import loader_worker_death, loader_workers_failed

    if isinstance(err, LoaderWorkersFailed):
        return loader_workers_failed(err, "run it again")
    if isinstance(err, OSError):
        advice = limit_advice(err)
        return describe_os_error(err) + (f"; {advice}, then run it again" if advice else "")
    if isinstance(err, ValueError):
        return str(err)
    return loader_worker_death(err, "run again")


def _write_triplets(args, netG, loader, device, images_dir, trackers, total, sections, stops):
    """Translate up to ``total`` images of ``loader`` and save each one's triplet (real and
    fake of an image without a target), appending it to ``sections`` once whole; stops early,
    between images or while the next one is waited for, when ``stops`` (StopRequests)
    received a signal. Returns the images' L1Scores (None when there were none: no pair)."""
    import torch
    from tqdm import tqdm

    from fastp2p.nn import graphed
    from fastp2p.terminal import stderr_bar
    from fastp2p.train.evaluation import L1Scores, train_mean_image
    from fastp2p.train.reports import TRIPLET, save_image

    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    netG.to(memory_format=layout)
    taken = set()   # output names used so far
    phase_dir = names_root(args)
    scores = None
    # On CUDA each forward is one graph replay (captured on the first image); eager on a CPU.
    translate = graphed(netG)
    # zip asks range first: no batch past the last used is waited for (nor its error met).
    # disable=None: no bar when stderr is not a terminal (a log file would keep every frame)
    batches = _batches_until_a_stop_while_waiting(loader, stops)
    for index, batch in stderr_bar(zip(range(total), batches), total=total, unit="image",
                                   disable=None, desc=f"translating {args.phase}"):
        real_A = batch["A"].to(device)
        fake_B = translate(real_A.contiguous(memory_format=layout))
        _refuse_nonfinite(fake_B, batch["A_paths"][0])
        if "B" in batch:   # a pair: its target scores the translation
            if scores is None:
                scores = L1Scores(args.input_nc == args.output_nc,
                                  *train_mean_image(args, batch["B"].shape[1:]))
            scores.add(real_A, fake_B, batch["B"])
            images = dict(zip(TRIPLET, (real_A[0], fake_B[0], batch["B"][0])))
        else:   # --dataset_mode single: no target; the reference's test model's names
            images = dict(zip(SINGLE, (real_A[0], fake_B[0])))
        source = Path(batch["A_paths"][0])
        name = output_name(source, phase_dir, taken)
        for label, image in images.items():
            save_image(image, images_dir / f"{name}_{label}.png", args.aspect_ratio)
        heading = name if "B" in batch else single_heading(name, source, phase_dir)
        sections.append((heading, [(label, f"images/{name}_{label}.png") for label in images]))
        for tracker in trackers:
            tracker.log_images(index, images)
        if stops.signal_number is not None:  # now, between images: every triplet is whole
            break
        requested = stops.take_checkpoint_request()
        if requested is not None:
            tqdm.write(f"{requested} received: fastp2p test has no checkpoint to save; it goes "
                       "on (SIGTERM or Ctrl-C stops it)", file=sys.stderr)
    return scores


def _batches_until_a_stop_while_waiting(loader, stops):
    """``loader``'s batches, ending where a stop request comes while the next one is waited for
    (``stops.while_waiting``): the loop checks ``stops`` only between images, so a request
    while an image never came (a hung network file system, a worker stuck in a decoder) was
    ignored for as long as the wait lasted. The request stays in ``stops.signal_number``, and
    the run ends as after a stop between images."""
    from fastp2p.train.stop_requests import StopWhileWaiting

    try:
        yield from stops.while_waiting(iter(loader))
    except StopWhileWaiting:
        return


def _refuse_nonfinite(fake_B, source: str) -> None:
    """ValueError naming the input image whose translation holds NaN or Inf, which would be
    saved as a black image (and scored as NaN) with exit 0. The weights are checked finite as
    they load (fastp2p.nn.checkpoint.weights_problem); finite weights large enough to overflow
    float32 still give one."""
    import torch

    if not bool(torch.isfinite(fake_B).all()):
        raise ValueError(f"{source}: the generator's output (fake_B) holds NaN or Inf, which "
                         "would be saved as a black image: the checkpoint's weights overflow "
                         "float32 on it; test another --epoch")


def _page_title(args, stopped_by, count: int, total: int) -> str:
    eval_mode = " (eval mode)" if args.eval else ""
    title = f"{args.name}: {args.phase}, epoch {args.epoch}{eval_mode}"
    if stopped_by is None:
        return title
    return (f"{title} (partial: stopped by {signal.Signals(stopped_by).name} after {count} of "
            f"{total} images)")


def _begin_results(out_dir: Path) -> Path:
    """Make ``out_dir/images`` (returned) for a run's images: refuse linked folders, remove
    temporary files of killed runs, and remove the page of an earlier run, which would
    otherwise list this run's images beside its own while this one runs, or for good if it
    stops early, and its scores.json, which a run that fails would leave as its own."""
    from fastp2p.atomic_files import remove_left_by_dead_processes
    from fastp2p.train.score_file import SCORES_FILE

    page = out_dir / "index.html"
    if page.is_dir() and not page.is_symlink():   # unlink would say a bare "Is a directory"
        raise ValueError(f"{page}: is a folder, where a file is written; move it away")
    images_dir = out_dir / IMAGES
    images_dir.mkdir(parents=True, exist_ok=True)
    # again once made: a link planted since run's check, before mkdir made these folders, is
    # refused before any image is written through it
    _refuse_linked_results(out_dir)
    for folder in (out_dir, images_dir):
        remove_left_by_dead_processes(folder)
    page.unlink(missing_ok=True)
    (out_dir / SCORES_FILE).unlink(missing_ok=True)   # nor are its scores left as this run's
    return images_dir


def _partial(out_dir: Path, written: str = "") -> str:
    """What an error or a second stop request leaves: images (``written``: how many, when
    known) and no page."""
    return f"the results in {out_dir} are partial ({written}no index.html)"


