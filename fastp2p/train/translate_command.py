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

This module keeps the command's options and the order of its steps; its parts are modules of
their own: the checks before torch loads (``translate_before_torch``), the lines on the data it
reads (``translate_data_notes``), the results folder (``results_folder``), the translation and
its triplets (``triplet_writing``), and where in its run the generator was saved
(``saved_point``).
"""
import argparse
import contextlib
import signal
import sys
from pathlib import Path

from fastp2p.command_errors import EXIT_IN_USE, print_error
from fastp2p.train.options import (QuickDefault, add_model_arguments, add_test_arguments,
                                   describe_defaults)
from fastp2p.train.reference_options import add_reference_arguments
from fastp2p.train.results_folder import (IMAGES, lock_results, partial_results,
                                          refuse_linked_results, tracker_folder)
from fastp2p.train.run_folder_lookup import (name_run_folder, resolve_as_test,
                                           take_generator_options)
from fastp2p.train.saved_point import WeightsState, weights_state_of
from fastp2p.train.trackers import add_tracker_arguments
from fastp2p.train.translate_before_torch import (failed, refuse_torchrun, refused,
                                                  refused_before_torch)
from fastp2p.train.translate_data_notes import (random_crop_note, single_mode_hint,
                                                trained_otherwise_notes)
from fastp2p.train.triplet_writing import Translated, write_triplets_and_page


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

    code = refused_under_torchrun("test", refuse_torchrun)  # first, before any other check
    if code is not None:
        return code
    try:
        require_packages(("PIL", "tqdm") + (() if args.dataroot else ("skimage",)),
                         extra="data")
    except MissingPackage as err:
        return refused(err)
    from fastp2p.train.reference_options import refuse_unsupported_values
    code = refused_at_once(args, "test")  # a typo needs no torch: said at once
    if code is not None:
        return code
    try:   # nor does a --model, --gpu_ids or --device fastp2p cannot honour, as train's
        refuse_unsupported_values(args, "test")
    except ValueError as err:
        return refused(err)
    given = vars(args).pop("given_options", None)
    not_found = name_run_folder(args, given, register)
    if not_found:
        return failed(not_found)
    taken, warning = take_generator_options(args, given, register)
    if taken:
        print(taken)
    if warning:   # a damaged train_opt.txt: the defaults stand in for what it lost
        print(warning, file=sys.stderr)
    code = refused_before_torch(args)
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
        return refused(err)
    try:  # an error of the file or of other model options exits 1, as a load always did
        check_op_settings(device, inference=True)   # exit code 1, as train's
        saved = _saved_generator(args, generator)
    except (ValueError, OSError) as err:
        return failed(err)
    try:
        check_options_fit_unet(args)
        threads = choose_threads(device.type, args.num_threads)   # (LOCAL_WORLD_SIZE's check)
    except ValueError as err:
        return refused(err)
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
            return failed(err)
        weights_state = weights_state_of(args, saved)
        # the file's tensors (the meta generator took them too), loaded into netG: not kept
        # through the translation
        del saved, generator
        # The stop requests are handled until the command returns: closing the loader and the
        # trackers inside them, a request arriving then is ignored instead of cutting that short
        # (a traceback at exit, loader workers left to the interpreter's exit hooks).
        second_request = f"a second stop request: stopped at once; {partial_results(out_dir)}"
        # checkpoint_requests: a scheduler's warning (SIGUSR1 / SIGUSR2, which kill by
        # default) is said and ignored; test has nothing to save, its SIGTERM stops it
        with StopRequests(second_request, checkpoint_requests=True) as stops:
            with resources.pop_all():
                try:
                    translated = write_triplets_and_page(args, netG, loader, device, out_dir,
                                                         trackers, stops)
                except (ValueError, OSError) as err:
                    return failed(err)
                unwritten = _scores_not_written(args, translated, weights, out_dir,
                                                weights_state)
            code = _report(translated, weights, out_dir, weights_state.words(),
                           scores_written=unwritten is None)
            # the images and page are whole, so their scores are printed first: then the error
            return code if unwritten is None else failed(unwritten)


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
    refuse_linked_results(out_dir)
    lock_results(out_dir, resources)   # first: a second run says only that it is one
    # The reference's test reads each whole image at --crop_size: a split packed at a larger
    # size is resized again to it, not cropped at random, unless --load_size asks for crops.
    single = args.dataset_mode == "single"   # DATAROOT's own images: no split, no pack
    notes = () if single else (packed_resize_note(args, args.phase),
                               packed_mode_note(args, args.phase))
    for line in (*notes, random_crop_note(args)):
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
        raise DataError(f"{err}{single_mode_hint(args)}") from None
    check_images_fit_unet(args, dataset)
    print(threads.summary)   # after the data's refusals, as train: no line before an error
    loader = create_dataloader(dataset, 1, shuffle=False,
                               num_workers=threads.loader_workers, seed=args.seed)
    resources.callback(loader.close)
    netG = generator_from_options(args, device, random_init=False)   # the load sets every weight
    folder, read, _ = saved
    weights = folder.load_network(netG, args.epoch, "G", read)
    for line in trained_otherwise_notes(args, folder.path / OPTIONS_FILE, single):
        print(line)
    if args.verbose:
        print(describe_networks(G=netG))
    trackers = open_trackers(args, tracker_folder(args, out_dir), "test")
    resources.callback(close_trackers, trackers)
    if args.eval:
        netG.eval()
    return loader, netG, weights, out_dir, trackers


def _scores_not_written(args, translated: Translated, weights: Path, out_dir: Path,
                        weights_state: WeightsState) -> ValueError | None:
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


def _report(translated, weights: Path, out_dir: Path, weights_state: str = "",
            scores_written: bool = True) -> int:
    """Print what the run did, its L1 scores and where its page and scores.json are (not
    scores.json where it was not written: ``scores_written``); its exit code (128 + the
    stop's signal).
    ``weights_state``: what ``weights_state_of`` says of the generator's file ``weights``."""
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
