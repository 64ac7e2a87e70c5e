"""``fastp2p train``: pix2pix training with the reference implementation's options.

Single process: ``fastp2p train --dataroot DIR --name NAME``. Several GPUs or hosts:
``torchrun --nproc_per_node=N -m fastp2p train ...``. Without ``--dataroot`` it trains a small
model on the embedded colourisation dataset (``--task``) in minutes on a CPU.
"""
import argparse
import sys
from functools import partial
from pathlib import Path

from fastp2p.command_errors import EXIT_IN_USE, print_error
from fastp2p.train.options import (QuickDefault, add_model_arguments, add_train_arguments,
                                   describe_defaults)
from fastp2p.train.reference_options import add_reference_arguments
from fastp2p.train.resuming import (check_dataroot_from_here, check_fresh_run, holds_checkpoint,
                                    load_resume_point, no_step_left, say_resumed)
from fastp2p.train.trackers import add_tracker_arguments
from fastp2p.train.train_before_torch import (print_refusal, refuse_before_options,
                                              refuse_cuda_only_options, refuse_missing_inputs,
                                              resolve_and_check_options)

DESCRIPTION = """\
Train pix2pix (conditional GAN, Isola et al. 2017) on a paired dataset. Every option of the
reference implementation's train.py (junyanz/pytorch-CycleGAN-and-pix2pix) is accepted, so its
commands run after changing their first word: `python train.py --model pix2pix ...` becomes
`fastp2p train --model pix2pix ...`; the options it has that mean nothing here (the visdom
display, --pool_size) are named in one line at the start and ignored.
Writes CHECKPOINTS_DIR/NAME/: latest_net_G.pth, latest_net_D.pth, EPOCH_net_G.pth (plain
state_dicts), *_train_state.pth (for --continue_train), loss_log.csv and web/index.html (loss
plot and sample images), and *_checkpoint.json (each set's manifest: a set changes all
together or not at all). A NAME that holds another run's checkpoints is refused unless
--continue_train (resume it) or --overwrite (start again there) is given; while a run trains,
it holds CHECKPOINTS_DIR/NAME/.lock, and a second run of that NAME exits with code 75.
On CUDA the step runs fused Adam, an lr in device memory and, by default, one CUDA graph per
step. Ctrl-C, SIGTERM, SIGHUP (a closed terminal; not under nohup) or SIGXCPU (a soft CPU-time
limit) saves latest_* and exits with 128+signal; SIGUSR1 or SIGUSR2 (a scheduler's warning
before its time limit, SLURM's --signal=USR1@60; under torchrun send it to the ranks, not
torchrun: see the README) saves latest_* and trains on; a NaN/Inf loss, weight, buffer or
optimizer state stops with exit code 1 before anything non-finite is saved, and the last good
checkpoint stays; a failed write exits with 1 and one line naming the file. At the end it prints the
images/s over the steps after the first and the share of that time spent waiting for data, in
the step, logging, and copying samples and checkpoints to host memory (a background thread
writes their files while training goes on).
Without --dataroot: the embedded dataset of --task (811 grayscale->colour pairs by default) and a
quick profile (unet_64, ngf/ndf 16, 72->64 crops, batch 32, lr 1e-3, 7+17 epochs); every default
that changes says so below. `fastp2p test` then prints the test L1 against two baselines."""

EPILOG = f"""\
exit codes: 0 trained (or nothing left to train), 1 failed (a message says why), 2 options
refused, {EXIT_IN_USE} NAME in use by another fastp2p train run, or DATAROOT/PHASE being
written by fastp2p pack (try again later), 128+N stopped by signal N (130 Ctrl-C, 143
SIGTERM, 152 SIGXCPU): latest_* saved once training has begun, nothing before (one line says
which); --resume_or_start resumes or starts either way."""


# the options an LRSchedule is built from (and --epoch_count, which a training state replaces)
SCHEDULE_OPTIONS = ("lr", "lr_policy", "n_epochs", "n_epochs_decay", "lr_decay_iters",
                    "lr_step_at")


def register(commands) -> None:
    from fastp2p.data import add_data_arguments

    parser = commands.add_parser("train", help="train pix2pix (reference options)",
                                 description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.set_defaults(load_size=QuickDefault(parser.get_default("load_size"), 72),
                        crop_size=QuickDefault(parser.get_default("crop_size"), 64))
    describe_defaults(parser, ("load_size", "crop_size"))
    add_model_arguments(parser)
    add_train_arguments(parser)
    add_tracker_arguments(parser, "loss_log.csv and the web/ page")
    add_reference_arguments(parser, "train")
    # given_options: the options the command line gives (fastp2p.cli finds them), so that
    # --continue_train takes the others from the run
    parser.set_defaults(run=run, given_options=None)


def _check_device_options(args, device) -> None:
    """The checks ``resolve_and_check_options`` leaves to the device this process trains on (torch
    loaded); a ValueError here exits with code 2 too."""
    from fastp2p.train.networks import check_networks_fit_memory
    from fastp2p.torchrun_variables import launched_world_size

    refuse_cuda_only_options(args, str(device))
    if device.type != "cuda" and args.norm == "syncbatch" and launched_world_size() > 1:
        # one process converts nothing (syncbatch is batch norm there), as the reference
        raise ValueError("--norm syncbatch needs CUDA devices across processes (PyTorch's "
                         "SyncBatchNorm has no CPU implementation); use --norm batch or "
                         "instance on CPU")
    check_networks_fit_memory(args, device, training=True)


def _claim_run_folder(args, info, folder_lock) -> int:
    """0 when this run may train in CHECKPOINTS_DIR/NAME: the folder's lock taken (no other
    run is training there; held until the run ends) and ``check_fresh_run`` passed; else the
    exit code, after one line on stderr: EXIT_IN_USE when another process holds the folder, 1
    when it cannot be made, 2 for the option errors of ``check_fresh_run``. In a torchrun job
    rank 0 alone takes the lock and checks, and every rank gets its answer, so all ranks stop
    together (a rank that went on would wait at the first collective for one that left)."""
    from fastp2p.atomic_files import LinkToNothing, NotAPlainFile
    from fastp2p.train.checkpoints import described_with_disk_advice
    from fastp2p.train.distributed import from_main_process
    from fastp2p.train.run_lock import RunFolderBusy

    code = 0
    if info.is_main:
        try:
            warning = folder_lock.acquire()
            if warning:
                print(warning, file=sys.stderr)
            check_fresh_run(args)
        except RunFolderBusy as err:
            print_error("train", err)
            code = EXIT_IN_USE
        except (LinkToNothing, NotAPlainFile) as err:
            print_error("train", err)
            code = 1
        except ValueError as err:
            print_error("train", err)
            code = 2
        except OSError as err:  # e.g. a read-only checkpoints folder
            print_error("train", described_with_disk_advice(err))
            code = 1
    return from_main_process(code, info)


def _resume_notes(args, given) -> tuple:
    """Turn --resume_or_start into --continue_train or not, and with --continue_train take the
    options the command line does not give (``given``; None: a caller's own namespace, all of
    whose options count as given) from the run's options file: (the lines that say what was
    done and the warnings on what of the file could not be taken, for rank 0 to print once the
    run holds its folder, on stdout and stderr; the DatarootFromHere of a relative --dataroot
    taken from a file that does not say where it is relative to, or None:
    TakenOptions.dataroot_from_here).
    """
    from fastp2p.train.reference_options import checkpoint_label, run_name
    from fastp2p.train.saved_options import OPTIONS_FILE, saved_options_note

    try:   # the folder as --suffix will name it, and the set --load_iter will load
        folder, label = Path(args.checkpoints_dir) / run_name(args), checkpoint_label(args)
    except ValueError:   # a --suffix refused: said as the options are checked
        return [], [], None
    notes = []
    if args.resume_or_start and not args.continue_train and not args.overwrite:
        args.continue_train = holds_checkpoint(folder, label)
        notes.append(f"--resume_or_start: {folder} holds checkpoint {label}: resuming it"
                     if args.continue_train else
                     f"--resume_or_start: no checkpoint {label} in {folder}: a new run")
    if not args.continue_train or given is None or not folder.is_dir():
        return notes, [], None   # (no folder: the missing checkpoint's error says so)
    taken, unreadable = saved_options_note(args, register, given, folder / OPTIONS_FILE)
    if unreadable:
        return notes, [f"--continue_train: {unreadable}"], None
    warnings = taken.warnings()
    return ([*notes, f"--continue_train: {taken.summary()}"],
            [f"--continue_train: {'; '.join(warnings)}"] if warnings else [],
            taken.dataroot_from_here)


def run(args: argparse.Namespace, times=None, name_files: bool = True) -> int:
    """``times``: a StageTimes to time the loop into (the benchmark's end-to-end section reads
    it afterwards); by default one that skips the first step. ``name_files``: whether the end
    summary names where the checkpoints, samples, loss plot, loss log and page are; the
    benchmark's end-to-end job turns it off, as its run folder is removed with the job."""
    # first: the options taken from the run decide everything after (--dataroot, the packages)
    said, warned, dataroot_from_here = _resume_notes(args, vars(args).pop("given_options", None))
    resume_notes = (*said, *warned)   # before a refusal, all on stderr
    code = refuse_before_options(args, resume_notes)
    if code is not None:
        return code
    load_size_given = not isinstance(args.load_size, QuickDefault)
    code = resolve_and_check_options(args, resume_notes)
    if code is None:
        code = refuse_missing_inputs(args, resume_notes)
    if code is not None:
        return code
    from fastp2p.stops_deferred import import_torch
    import_torch()  # first, whole: a Ctrl-C inside it aborted the process or was lost
    import torch

    from fastp2p.data import DataError
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.train.checkpoints import CheckpointWriteError, described_with_disk_advice
    from fastp2p.train.distributed import shutdown_processes
    from fastp2p.train.networks import check_op_settings
    from fastp2p.train.progress import progress_bar
    from fastp2p.train.run_lock import RunFolderLock
    from fastp2p.train.trackers import close_trackers, open_trackers

    try:
        ignored, info = _start_processes(args)
    except ValueError as err:
        print_refusal(err, resume_notes)
        return 2
    folder_lock = RunFolderLock(Path(args.checkpoints_dir) / args.name)
    refused = _claim_run_folder(args, info, folder_lock)
    if refused:
        folder_lock.release()
        shutdown_processes(info)
        return refused
    say, say_error = _messengers(info)
    if ignored:
        say(ignored)
    for note in said:
        say(note)
    for warning in warned:
        say_error(warning)
    trackers, loader, training = [], None, False
    try:
        graphs = args.graphs
        if graphs is None:
            graphs = info.device.type == "cuda" and info.world_size == 1
        check_op_settings(info.device, inference=False)
        torch.manual_seed(args.seed)
        dataset = _build_dataset(args, load_size_given, say)
        loader = _build_loader(args, dataset, info, graphs, say)
        if len(loader) == 0:
            raise ValueError(f"{len(dataset)} training pairs make no full batch of "
                             f"{args.batch_size}: lower --batch_size")
        netG, netD = _build_networks(args, info, say)
        checkpoints, replaced_run = _prepare_run_folder(args, info)
        state, state_path = load_resume_point(args, checkpoints, netG, netD, say)
        trainer = _build_trainer(args, info, netG, netD, checkpoints, replaced_run, times,
                                 graphs, say, say_error)
        if state is not None:
            code = _resume(trainer, state, state_path, loader, dataroot_from_here)
            if code is not None:
                return code
        # before the reports open: a resume with nothing to train leaves the run's options file,
        # loss log and page as they are (its next resume takes its options from that file)
        if state is not None and not say_resumed(args, trainer, len(dataset), say):
            return 0
        no_step = state is not None and no_step_left(trainer, loader)
        # its epoch's end, then, as the run's schedule makes it; the changed options are applied
        # only where they end the run sooner (as they are after a stop one step earlier)
        trains = not no_step or _take_run_schedule(args, trainer) != trainer.last_epoch
        page = loss_log = None
        if info.is_main:
            try:
                page, loss_log = _open_run_files(args, checkpoints, state, (say, say_error),
                                                 trainer, dataroot_from_here,
                                                 info.device.type == "cpu", trains)
            except OSError as err:   # a full disk: said as a failed write in training is
                _print_failure(trainer.write_failure(err), training)
                return 1
            trackers = open_trackers(args, checkpoints.path, "train")
            trainer.report_to(page, loss_log, trackers)
        say(_start_line(args, len(dataset), info, graphs, trainer) if trains
            else f"{args.name}: saving the end of epoch {trainer.last_epoch}, the last, with no "
                 "step to train (the run stopped right after its last step)")
        training = True
        code = trainer.fit(loader, progress_bar=(lambda **kw: progress_bar(unit="step", **kw))
                           if info.is_main else None)
        if code == 0 and info.is_main:
            _report_end(trainer, info, say, (checkpoints, page, loss_log) if name_files else None)
        return code
    except PackFolderBusy as err:   # a pack writing --dataroot's split: try again later
        _print_failure(err, training)
        return EXIT_IN_USE
    except (ValueError, DataError, CheckpointWriteError) as err:
        _print_failure(err, training)
        return 1
    except OSError as err:  # e.g. a read-only or full checkpoints folder
        _print_failure(described_with_disk_advice(err), training)
        return 1
    finally:
        close_trackers(trackers)
        if loader is not None:
            loader.close()
        # DDP's reducers go while the process group is still registered (see shutdown_processes)
        trainer = None  # noqa: F841
        shutdown_processes(info)
        folder_lock.release()


def _print_failure(err, training: bool) -> None:
    """The error line of a run that failed: before its training loop, as a refusal (once per
    node); in it, on the rank that met it (a bad image in that rank's share of the data, its
    loader worker that died), which may be on no node's first process: said once per node, it
    went unsaid there, and the other ranks' line pointed at a message that was not there."""
    if not training:
        print_refusal(err)
        return
    from fastp2p.train.early_refusals import print_on_this_rank
    print_on_this_rank("train", err)


def _start_processes(args):
    """(the reference options' ignored-options line or None, the ProcessInfo), after the
    checks that need torch and the device; ValueError for an option they refuse."""
    from fastp2p.train.distributed import init_processes, launched_local_rank, resolve_device
    from fastp2p.train.reference_options import apply_reference_options
    from fastp2p.train.trackers import check_trackers_installed

    ignored = apply_reference_options(args, "train")
    check_trackers_installed(args)
    # the device this process will train on: under torchrun its own GPU, not cuda:0
    _check_device_options(args, resolve_device(args.device, launched_local_rank()))
    return ignored, init_processes(args.device)


def _messengers(info):
    """(say, say_error) of this process: progress on stdout; errors, warnings and stops on
    stderr, as the setup's errors are; nothing on ranks other than 0 (the training loop's
    error lines reach their stderr all the same: ``Trainer._say_on_every_rank``)."""
    from tqdm import tqdm

    if not info.is_main:
        return (lambda message: None), (lambda message: None)
    return tqdm.write, (lambda message: tqdm.write(message, file=sys.stderr))


def _build_dataset(args, load_size_given: bool, say):
    """The training pairs, after the notes on how a packed dataset is read, checked against
    the networks' image sizes."""
    from fastp2p.data import create_dataset
    from fastp2p.data.create import follow_packed_load_size, packed_mode_note, packed_resize_note
    from fastp2p.train.image_sizes import check_images_fit_unet, check_patchgan_fits_first_image

    followed = follow_packed_load_size(args, args.phase, load_size_given)
    resized = packed_resize_note(args, args.phase)
    for line in (followed, resized, packed_mode_note(args, args.phase)):
        if line:
            say(line)
    dataset = create_dataset(args, args.phase, pack_embedded=True)
    first_item = check_images_fit_unet(args, dataset)
    if first_item is not None:
        check_patchgan_fits_first_image(args, *first_item)
    return dataset


def _build_loader(args, dataset, info, graphs: bool, say):
    """The batches' loader, with the threads chosen (and said) for it; ``graphs``: the step is
    captured, so every batch is full."""
    from fastp2p.data import create_dataloader
    from fastp2p.data.packed_loader import PackedDeviceLoader
    from fastp2p.train.cpu_threads import apply_thread_choice, choose_threads, local_processes
    from fastp2p.train.loader_memory import check_loader_fits_memory

    packed = (hasattr(dataset, "read_batch") and dataset.resize_to is None
              and args.input_nc == args.output_nc == 3)
    threads = choose_threads(info.device.type, args.num_threads, packed=packed)
    apply_thread_choice(threads)
    say(threads.summary)
    if not packed:
        return create_dataloader(dataset, args.batch_size, shuffle=not args.serial_batches,
                                 num_workers=threads.loader_workers, seed=args.seed,
                                 rank=info.rank, world_size=info.world_size,
                                 drop_last=graphs, pin_memory=info.device.type == "cuda")
    # Packed shards: uint8 batches read straight from the shards (into pinned buffers on a GPU)
    # by threads of this process, cropped, flipped and normalised where the step runs (same
    # pairs, same draws as the item loader).
    check_loader_fits_memory(dataset, args.batch_size, device=info.device,
                             readers=threads.packed_readers, processes=local_processes())
    return PackedDeviceLoader(dataset, args.batch_size, shuffle=not args.serial_batches,
                              seed=args.seed, device=info.device, rank=info.rank,
                              world_size=info.world_size, drop_last=graphs,
                              readers=threads.packed_readers)


def _build_networks(args, info, say):
    """(netG, netD) on this process's device, described with --verbose."""
    from fastp2p.train.networks import discriminator_from_options, generator_from_options
    from fastp2p.train.reference_options import describe_networks

    netG = generator_from_options(args, info.device)
    netD = discriminator_from_options(args, info.device)
    if args.verbose:
        say(describe_networks(G=netG, D=netD))
    return netG, netD


def _prepare_run_folder(args, info):
    """(the CheckpointFolder, the checkpoint sets --overwrite replaces or None); rank 0 makes
    the folder ready and, with --overwrite, removes the replaced run's reports."""
    from fastp2p.train.checkpoints import CheckpointFolder
    from fastp2p.train.report_removal import refuse_planted_links, remove_reports
    from fastp2p.train.trackers import refuse_linked_tracker_folders

    checkpoints = CheckpointFolder(args.checkpoints_dir, args.name)
    replaced_run = None
    if info.is_main:
        refuse_planted_links(checkpoints.path, web=not args.no_html, overwrite=args.overwrite)
        refuse_linked_tracker_folders(args, checkpoints.path, "train")
        checkpoints.prepare()
        if args.overwrite:
            replaced_run = checkpoints.saved_sets()
            remove_reports(checkpoints.path)
    return checkpoints, replaced_run


def _build_trainer(args, info, netG, netD, checkpoints, replaced_run, times, graphs: bool, say,
                   say_error):
    """The engine, the lr schedule and the Trainer that runs them; ``times``: the StageTimes
    given to ``run``, or None for a new one."""
    import torch

    from fastp2p.train.distributed import wrap_for_data_parallel
    from fastp2p.train.engine import Pix2PixEngine
    from fastp2p.train.stage_times import StageTimes
    from fastp2p.train.trainer import Trainer

    sync = args.norm == "syncbatch"
    engine = Pix2PixEngine(
        *(wrap_for_data_parallel(net, info, sync, args.channels_last) for net in (netG, netD)),
        gan_mode=args.gan_mode, lambda_L1=args.lambda_L1, lr=args.lr, beta1=args.beta1,
        precision=args.precision, channels_last=args.channels_last, cuda_graph=graphs)
    schedule = _lr_schedule(args)
    if times is None:
        times = StageTimes()
    if info.device.type == "cuda":
        times.sync = lambda: torch.cuda.synchronize(info.device)
    return Trainer(args, engine, netG, netD, schedule, checkpoints, is_main=info.is_main,
                   world_size=info.world_size, say=say, say_error=say_error, times=times,
                   replaced_run=replaced_run)


def _lr_schedule(args):
    """The LRSchedule of ``args``' options (SCHEDULE_OPTIONS and --epoch_count)."""
    from fastp2p.train.schedulers import LRSchedule
    return LRSchedule(args.lr_policy, args.lr, n_epochs=args.n_epochs,
                      n_epochs_decay=args.n_epochs_decay, epoch_count=args.epoch_count,
                      lr_decay_iters=args.lr_decay_iters, step_at=args.lr_step_at)


def _take_run_schedule(args, trainer) -> int:
    """Give resumed ``trainer`` the lr schedule of the run's options file, with the state it
    loaded, for a resume that trains no step (``no_step_left``): its epoch's end line and saved
    lr are then the lr that epoch trained at, and its schedule's state (the plateau policy's)
    an unstopped run's, whatever schedule options the command line changes. Returns the run's
    own last epoch (its file's --n_epochs + --n_epochs_decay)."""
    from fastp2p.train.saved_options import OPTIONS_FILE, command_parser, run_values
    run_args = run_values(args, command_parser(register), trainer.checkpoints.path / OPTIONS_FILE,
                          SCHEDULE_OPTIONS)
    schedule = _lr_schedule(run_args)
    schedule.load_state_dict(trainer.schedule.state_dict(), epoch=trainer.progress.epoch)
    trainer.schedule = schedule
    return run_args.n_epochs + run_args.n_epochs_decay


def _resume(trainer, state, state_path, loader, dataroot_from_here=None) -> int | None:
    """``trainer`` resumed from ``state``, before the run writes anything: a refused state
    leaves its folder as it was (the options file a later --continue_train compares with, the
    loss log, the page). 2 after its line where the saved position cannot be resumed with this
    run's options (ResumeError), or, with ``dataroot_from_here`` (``_resume_notes``), whose
    dataset holds another number of pairs than it trained on; a state that does not fit this
    run's networks and engine is a ValueError naming its file; None once resumed."""
    from fastp2p.train.trainer import ResumeError

    try:
        trainer.resume(state, loader)
        if dataroot_from_here:
            check_dataroot_from_here(dataroot_from_here, trainer.progress,
                                     len(loader.dataset))
    except ResumeError as err:
        print_refusal(err)
        return 2
    except ValueError as err:  # the state does not fit this run's networks and engine
        raise ValueError(f"{state_path}: {err}") from err
    return None


def _open_run_files(args, checkpoints, state, messengers, trainer, dataroot_from_here,
                    on_cpu: bool, trains: bool):
    """Rank 0's (page or None, loss log) in the run folder, after the options file is written
    with this run's compute threads, or its write is left to ``trainer``'s first save
    (``_write_run_options``); on resuming, the options changed since are said, and ``on_cpu``
    another count of threads (``messengers``: ``_messengers``' pair; the loss log's damaged
    rows are a warning, on stderr); ``trains`` False (a resume with no step left at the run's
    own end, ``no_step_left``): the changed options said as not applied and the options file
    left as the run's. ``dataroot_from_here``: see ``_resume_notes``. An OSError is a failed
    write of the run's own files (the trackers, opened apart, may raise one of their own: a
    network error)."""
    import torch

    from fastp2p.train.kept_runs import KeptNumber
    from fastp2p.train.loss_log import LossLog
    from fastp2p.train.report_names import LOSS_LOG, WEB
    from fastp2p.train.training_page import STAGED_RECORD, TrainingPage
    from fastp2p.train.saved_options import OPTIONS_FILE, resume_changes_line, threads_change

    say, say_error = messengers
    options_file, threads = checkpoints.path / OPTIONS_FILE, torch.get_num_threads()
    if state is not None:
        changes_line = resume_changes_line(args, options_file, trains=trains)
        if changes_line:
            say(changes_line)
        # on a GPU the CPU's threads compute none of the step's sums; with no step, nothing
        threads_line = threads_change(options_file, threads) if on_cpu and trains else ""
        if threads_line:
            say(threads_line)
    if trains:   # a resume that trains no step leaves the file recording what the run used
        # a folder the run may not have started in is not recorded as the run's
        _write_run_options(args, trainer, options_file, started_here=not dataroot_from_here,
                           compute_threads=threads)
    resume_step = state["engine"]["steps"] if state else None
    # a resume without a training state counts its steps from 0, after another run's rows
    set_aside = args.continue_train and state is None
    # one N for the log and the samples of one earlier run kept beside this one's
    kept_number = KeptNumber(checkpoints.path)
    page = (None if args.no_html
            else TrainingPage(checkpoints.path / WEB, args.name, resume_step=resume_step,
                              say=say_error, set_aside=set_aside, kept_number=kept_number,
                              staged=state.get(STAGED_RECORD) if state else None))
    loss_log = LossLog(checkpoints.path / LOSS_LOG, resume_step=resume_step, say=say_error,
                       set_aside=set_aside, kept_number=kept_number)
    if page is not None:
        page.log_kept()
    return page, loss_log


def _write_run_options(args, trainer, options_file, **recorded) -> None:
    """Write ``args`` (as they are now) to the run's ``options_file`` (``write_options`` with
    ``recorded``): at once for a new run (its folder is a run's from the start), and with a
    resume's first save, once that set is on disk: a resume that saves nothing (killed, failed)
    leaves the file recording the options its sets were trained with, which the next
    --continue_train takes (it took those of the command line that failed)."""
    from fastp2p.train.saved_options import write_options

    write = partial(write_options, argparse.Namespace(**vars(args)), options_file, **recorded)
    if args.continue_train:
        trainer.after_first_save(partial(_write_resumed_options, write, options_file))
    else:
        write()


def _write_resumed_options(write, options_file, step: int) -> None:
    """``write`` a resume's options file once its first save, of ``step``, is on disk. Where
    that fails, the new latest_* is this command line's and the file still records the earlier
    options, which a plain --continue_train would take: said so (it said the checkpoint was
    unchanged), with the way on: this command again, which writes the file at its first save."""
    from fastp2p.train.checkpoints import describe_os_error, what_to_fix
    from fastp2p.train.stop_requests import TrainingStopped
    from fastp2p.train.trainer import EXIT_FAILED

    try:
        write()
    except OSError as err:
        raise TrainingStopped(
            f"{describe_os_error(err)}; saved {options_file.parent}/latest_* (step {step}) with "
            f"this command line's options, but {options_file.name} still records the earlier "
            f"ones, which a plain --continue_train would take. {what_to_fix(err)}, then run "
            "this same command again", EXIT_FAILED) from err


def _start_line(args, pairs: int, info, graphs: bool, trainer) -> str:
    """The run's start line; and a note on a second line when ``trainer``'s schedule trains the
    last epoch at lr 0 (--lr_step_at epoch_start, as the reference's train.py steps it: with
    --n_epochs_decay 0, a one-epoch run trains nothing), which nothing else would say."""
    line = (f"training {args.name}: {pairs} pairs, {args.netG} ngf {args.ngf}, "
            f"{args.netD} ndf {args.ndf}, {_image_size_words(args)}, batch {args.batch_size} x "
            f"{info.world_size} process(es) on {info.device}, {args.precision}"
            f"{', CUDA graph' if graphs else ''}{', channels-last' if args.channels_last else ''}")
    schedule, last = trainer.schedule, trainer.last_epoch
    if schedule.base_lr > 0 and schedule.lr_for_epoch(last) == 0:
        line += (f"\nnote: epoch {last}, the last, trains at lr 0 (--lr_policy "
                 f"{args.lr_policy}, --lr_step_at {args.lr_step_at}): its steps change no "
                 "weight; --lr_step_at epoch_end trains it at an lr above 0")
    return line


def _report_end(trainer, info, say, files) -> None:
    """Rank 0's end summary: the loop's stage times, and, unless ``files`` is None, where the
    run's files are (``files``: the checkpoint folder, page and loss log)."""
    if trainer.times.describe():
        say(("rank 0: " if info.world_size > 1 else "") + trainer.times.describe())
    if files is not None:
        _say_where_files_are(say, *files)


def _say_where_files_are(say, checkpoints, page, loss_log) -> None:
    """The end summary's lines naming the run's files, as they are on disk: of the page's, only
    those that hold something (a resumed, finished run trains no step; a plot or page that
    could not be written had its warning line), and the page to open only if it is there."""
    say(f"checkpoints: {checkpoints.path}/latest_net_G.pth (and latest_net_D.pth)")
    if page is not None:
        samples = (page.images if any(page.images.glob("*.png"))
                   else "none (no training step ran)")
        say(f"samples:     {samples}\nloss plot:   {_loss_plot_words(page, loss_log)}")
    say(f"loss log:    {loss_log.path}")
    if page is not None and page.index.exists():
        say(f"open:        {page.index.resolve()}")


def _loss_plot_words(page, loss_log) -> str:
    """The loss plot's path, or why there is none."""
    if page.loss_plot.exists():
        return str(page.loss_plot)
    if loss_log.rows:
        return "none (it could not be drawn: see the warning above)"
    return "none (no losses logged)"


def _image_size_words(args) -> str:
    """What --preprocess makes the training images' size, for the start line."""
    if "crop" in args.preprocess:
        return f"crop {args.crop_size}"
    if args.preprocess == "scale_width":
        return f"width {args.load_size}"
    return "images at their own size"
