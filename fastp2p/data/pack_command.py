"""``fastp2p pack``: turn a folder of paired images into shards (and ``--verify`` them)."""
import argparse
import os
import sys

from fastp2p import cpu_info
from fastp2p.byte_sizes import binary_size
from fastp2p.command_errors import EXIT_IN_USE, options_given, print_error, unread_options
from fastp2p.data.worker_pool import exit_at_sigterm
from fastp2p.inodes import disk_limit_advice
from fastp2p.option_types import (given_path, image_side, pack_workers, plain_name,
                                  positive_int, seed)
from fastp2p.terminal import is_terminal

# Bad shard files --verify names one line each per pack; more are counted in one line, so that
# a huge pack gone bad (a disk's worth of shards) stays readable.
MAX_LISTED = 10
# the line of a pack stopped by Ctrl-C or SIGTERM, after "interrupted" or STOPPED_BY_SIGTERM
PACK_AGAIN = "run the same command again to resume (finished shards are kept)"
SYNTHETIC_AGAIN = ("while writing the synthetic pairs; run the same command again to finish "
                   "them (the pairs written are kept)")
STOPPED_BY_SIGTERM = "stopped by SIGTERM"
VERIFY_AGAIN = "--verify changed nothing: run it again to check the pack"

DESCRIPTION = f"""\
Decode and resize every pair of DATAROOT once and write OUT/PHASE/ shards of uint8 A|B pairs
plus an index (count, sizes, source names, sha256 and CRC32 checksums). Training with
--dataroot OUT then reads each pair with one positioned read: no image decoding in the
training loop.

Pairs are stored as the reference's --preprocess resize_and_crop sees them after its bicubic
resize (each half load_size x load_size); the random crop and flip still happen at load time,
so a packed dataset gives the same pairs as the folders (with --input_nc 1 / --output_nc 1
only when packed with --gray, which also stores the halves converted to grayscale before the
resize, as the reference takes them). Other --preprocess modes (crop, scale_width,
scale_width_and_crop, none) need the original pixels or sizes: train those from the image
folders.

Every phase's images are listed and their headers read and checked (format, size, pairing)
before the first phase is written (damage that only decoding finds, a truncated JPEG, stops the
run when its phase is packed; --skip-bad decodes every image up front), and a run whose shards
cannot fit in the disk's free space or inodes (all its phases on it) is refused before it writes
anything. An interrupted run (Ctrl-C: exit 130; SIGTERM: 143; a crash) resumes: run the
same command again; finished shards whose checksum verifies are kept. A pack in OUT, finished or
interrupted, made from another DATAROOT (their resolved paths differ) or with another
--load_size is refused unless --overwrite asks to replace it (one of the same DATAROOT and
--load_size is resumed, or updated where images were added, removed or changed); an index.json
there that pack did not write is always refused, and so is an OUT inside one of DATAROOT's
phase folders (DATAROOT/train/x; train/, val/, test/ or a --phase, there or not), a second
pack into a folder another one is writing, and a run that would change a pack being read by a
training or `fastp2p test` (stop it first: its shards would change under it) or checked by
another `fastp2p pack`; a re-run that finds the pack up to date changes nothing and goes
through. `fastp2p pack --verify OUT`
checks every shard's size and both checksums against the index, as training does, in every pack
in OUT (any --phase name), going on past a bad one: it names each bad shard (the first
{MAX_LISTED} of a pack, then their count) and the command that repacks it, prints each pack's
result (then, for several packs, a total line, passed or not) and exits 1 if any is bad (or if a
pack's .pack.lock is a link, FIFO or folder, which training refuses too).

No dataset at hand? `fastp2p pack --synthetic N DATAROOT [OUT]` writes N synthetic aligned
pairs (outlines -> shaded shapes, 512x256 A|B JPEGs, the same files for the same --seed) into
DATAROOT/train, then packs them into OUT if given: a set of any size up to 10000000 pairs, to
measure packing and training on."""

EPILOG = f"""\
exit codes: 0 packed (or up to date; --verify: every pack passed), 1 failed (a message says
why; --verify: a pack is bad), 2 options refused, {EXIT_IN_USE} OUT/PHASE in use by another
fastp2p pack writing it (--verify: the packs that failed are being written), or by a training
or fastp2p test reading a pack this run would change (try again later), 130 Ctrl-C, 143
SIGTERM (run the same command again to resume)."""


def _phase_name(text: str) -> str:
    """A --phase word: a plain name; one with a path in it is most likely DATAROOT or OUT
    given after --phase, which takes every word that follows: say where they go."""
    try:
        return plain_name(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(
            f"{error}; --phase takes every word after it: put DATAROOT and OUT before it, e.g. "
            "fastp2p pack DATAROOT OUT --phase train val") from None


def register(commands) -> None:
    parser = commands.add_parser(
        "pack", help="pack a paired-image dataset into shards for fast loading",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataroot", nargs="?", metavar="DATAROOT", type=given_path,
                        help="dataset folder holding train/ (and val/, test/), aligned A|B images "
                             "or A/ and B/ subfolders (see --dataset_mode)")
    parser.add_argument("out", nargs="?", metavar="OUT", type=given_path,
                        help="output folder; gets OUT/PHASE/index.json and shard-NNNNN.u8 files "
                             "(pass it to `fastp2p train --dataroot OUT`)")
    parser.add_argument("--verify", metavar="OUT", type=given_path,
                        help="instead of packing: check the size and both checksums (sha256, "
                             "CRC32) of every shard in OUT against its index: every phase "
                             "folder's pack, whatever --phase it was packed with (or the one pack "
                             "OUT is); every bad shard is named, exit 1 if there is any; the "
                             "options that only pack, --phase included, are refused with it")
    parser.add_argument("--load_size", type=image_side, default=286,
                        help="each half is resized (bicubic) to load_size x load_size, as "
                             "--preprocess resize_and_crop does before its crop (default 286); "
                             "train with the same --load_size")
    parser.add_argument("--dataset_mode", default="aligned", choices=("aligned", "two_folders"),
                        help="aligned: each image is A|B side by side (default); two_folders: "
                             "PHASE/A/x.png pairs with PHASE/B/x.* by name (the same stem, any "
                             "image extension)")
    parser.add_argument("--phase", nargs="+", metavar="PHASE", type=_phase_name,
                        help="which phase folders to pack, after DATAROOT and OUT (it takes "
                             "every word that follows) (default: every one of train, val, test "
                             "that DATAROOT has)")
    parser.add_argument("--workers", type=pack_workers, default=None,
                        help="processes that decode and write shards in parallel, at most the "
                             "CPUs this process may use, or 4 on fewer (default: all of them)")
    parser.add_argument("--pairs-per-shard", dest="pairs_per_shard", type=positive_int,
                        default=None,
                        help="pairs in each shard file (default: about 256 MB per shard, and at "
                             "least 16 shards when there are enough pairs)")
    parser.add_argument("--gray", action="store_true",
                        help="also store each half converted to grayscale before its resize "
                             "(gray-NNNNN.u8, a third more disk), as --input_nc 1 / --output_nc "
                             "1 take it; a pack without it refuses those options")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a pack in OUT made from another DATAROOT or with "
                             "another --load_size (without it, that is refused; a pack of the "
                             "same DATAROOT and --load_size is always resumed or updated)")
    parser.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                        help="skip unreadable or mismatched images and list them, instead of "
                             "stopping at the first one (every image is then decoded once more "
                             "up front to find truncated files)")
    parser.add_argument("--synthetic", type=int, metavar="N", default=None,
                        help="first write N synthetic edges->picture pairs into DATAROOT/train "
                             "(missing files only, all of them again if they are of another "
                             "--seed; deterministic per --seed; refuses a folder holding files "
                             "it did not write), then pack them into OUT if OUT is given. N is "
                             "at most 10000000 (files are numbered with 7 digits), and is "
                             "refused before anything is written where the disk has no room "
                             "for the pairs and their pack")
    parser.add_argument("--seed", type=seed, default=0,
                        help="which synthetic set --synthetic writes, 0 .. 2**63-1 (default 0)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (they are drawn on a terminal only, never into "
                             "a pipe or a log file)")
    # given_options: the options the command line typed (fastp2p.cli finds them), which
    # --verify refuses at any value
    parser.set_defaults(run=run, pack_parser=parser, given_options=None)


# The options --verify reads; every other option packs, and was ignored without a word with
# --verify, a refused value too. --phase is one of them: --verify checks every phase folder's
# pack. (DATAROOT and OUT, positional, are refused with a message of their own.)
_VERIFY_READS = ("--verify", "--no-progress")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fastp2p.optional_packages import MissingPackage, require_packages

    parser = args.pack_parser
    # tqdm's bars on stderr: on a terminal only (a log would keep every redrawn frame)
    progress = args.progress and is_terminal(sys.stderr)
    if args.verify is not None:
        if args.dataroot is not None or args.out is not None:
            parser.error("--verify OUT takes no DATAROOT; run `fastp2p pack --verify OUT`")
        packing = [option for option in options_given(parser, args.given_options)
                   if option not in _VERIFY_READS]
        if packing:
            parser.error(f"--verify OUT checks a pack and packs nothing, so "
                         f"{unread_options(packing)}")
        # verify only reads: stopping it loses nothing. As PID 1 (a container's), a SIGTERM
        # left at its default action is dropped, so `docker stop` waited for its SIGKILL.
        with exit_at_sigterm(f"fastp2p pack: {STOPPED_BY_SIGTERM}; {VERIFY_AGAIN}"):
            return _verify(Path(args.verify), progress)
    try:
        require_packages(("PIL", "tqdm"), extra="data")
    except MissingPackage as err:
        print_error("pack", err)
        return 2
    from fastp2p.data.errors import DataError, counted, shown_path
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.data.packed_index import PHASES, printable

    # --phase takes every word after it: DATAROOT and OUT given after it land in its list
    swallowed = ("; --phase takes every word after it (here: "
                 f"{' '.join(args.phase)}): put DATAROOT and OUT before it, e.g. fastp2p pack "
                 "DATAROOT OUT --phase train val") if args.phase else ""
    if args.synthetic is not None and args.dataroot is None:
        parser.error("--synthetic N writes into DATAROOT: pass it (and OUT to pack them)"
                     + swallowed)
    if args.synthetic is not None:
        from fastp2p.data.synthetic import count_problem
        problem = count_problem(args.synthetic)
        if problem:
            parser.error(problem)
    if args.synthetic is not None and args.dataset_mode != "aligned":
        parser.error("--synthetic writes aligned A|B images: drop --dataset_mode two_folders")
    if args.dataroot is None or (args.out is None and args.synthetic is None):
        parser.error("pass DATAROOT and OUT (or --verify OUT)" + swallowed)
    from fastp2p.data.pack import write_phase
    from fastp2p.data.pack_plan import pair_bytes, plan_phase, refuse_other_pack

    workers = cpu_info.usable_cpus() if args.workers is None else args.workers
    dataroot = Path(args.dataroot)
    writing = dataroot      # the folder an OSError that names no file (a write) was about
    out = None if args.out is None else Path(args.out)
    try:
        # Everything that can refuse DATAROOT or OUT is asked before anything is written,
        # synthetic pairs included, and before a first phase is packed.
        for folder, name in ((dataroot, "DATAROOT"), (out, "OUT")):
            if folder is not None and folder.exists() and not folder.is_dir():
                raise DataError(f"{shown_path(folder)}: {name} is a file, not a folder")
        if args.synthetic is None and not dataroot.is_dir():
            raise DataError(f"{shown_path(dataroot)}: DATAROOT folder not found; point it at a "
                            "dataset folder holding train/ (and val/, test/)")
        # The phases to pack: --phase, or the dataset's phase folders (train/ too where
        # --synthetic is about to write it).
        phases = list(dict.fromkeys(args.phase)) if args.phase else [
            p for p in PHASES
            if (dataroot / p).is_dir() or (p == "train" and args.synthetic is not None)]
        if out is not None:
            if not phases:
                from fastp2p.data.folders import images_placed_above
                raise DataError(f"{shown_path(dataroot)}: no {', '.join(PHASES)} folder in it; "
                                "pass --phase NAME for another phase folder"
                                f"{images_placed_above(dataroot / 'train')}")
            for phase in phases:
                if not (dataroot / phase).is_dir() and not (
                        phase == "train" and args.synthetic is not None):
                    raise DataError(f"{shown_path(dataroot / phase)}: folder not found; --phase "
                                    "names folders of DATAROOT to pack")
            _refuse_out_among_inputs(dataroot, out, phases)
        for phase in phases if out is not None else ():
            refuse_other_pack(out / phase, dataroot, args.load_size, args.overwrite)
        if args.synthetic is not None:
            from fastp2p.data.synthetic import write_synthetic
            _refuse_without_room(dataroot, out if "train" in phases else None, args.synthetic,
                                 args.load_size, args.gray)
            try:
                with exit_at_sigterm(f"fastp2p pack: {STOPPED_BY_SIGTERM} {SYNTHETIC_AGAIN}"):
                    folder = write_synthetic(dataroot, args.synthetic, seed=args.seed,
                                             workers=workers, progress=progress)
            except KeyboardInterrupt:   # before any packing: no shard to speak of
                print(f"fastp2p pack: interrupted {SYNTHETIC_AGAIN}", file=sys.stderr)
                return 130
            print(f"{folder}: {counted(args.synthetic, 'synthetic pair')} (seed {args.seed})")
            if out is None:
                return 0
        writing = out
        with exit_at_sigterm(f"fastp2p pack: {STOPPED_BY_SIGTERM}; {PACK_AGAIN}"):
            # Every phase is planned (its images' headers read and checked) before the first
            # is written: a file in val that is no image, or does not pair, stops the run
            # before train is packed, and the free-space check counts the phases still to
            # come. Damage only decoding finds stops it at its phase: a decode of every image
            # up front (--skip-bad's) would add a second decode to every pair.
            plans = [plan_phase(dataroot, out, phase, load_size=args.load_size,
                                dataset_mode=args.dataset_mode, skip_bad=args.skip_bad,
                                pairs_per_shard=args.pairs_per_shard, progress=progress,
                                overwrite=args.overwrite, gray=args.gray)
                     for phase in phases]
            while plans:
                plan = plans.pop(0)     # popped: a written phase's plan is freed before the next
                index = write_phase(plan, workers=workers, progress=progress, later=plans)
                skipped = len(index["skipped"])
                print(f"{plan.phase_dir}: {counted(index['count'], 'pair')} in "
                      f"{counted(len(index['shards']), 'shard')}"
                      + (f", {counted(skipped, 'bad file')} skipped" if skipped else ""))
                for path, why in index["skipped"]:     # file names: any characters
                    print(f"  skipped {printable(path)}: {printable(why)}", file=sys.stderr)
    except PackFolderBusy as error:   # not this run's fault: try again later, as train and test
        print_error("pack", error)
        return EXIT_IN_USE
    except DataError as error:
        print_error("pack", error)
        return 1
    except OSError as error:  # e.g. a full disk: finished shards are kept for the re-run
        reason = os.strerror(error.errno) if error.errno else str(error)
        path = error.filename if error.filename is not None else writing
        fix = disk_limit_advice(error) or "fix it"
        print_error("pack", f"{path}: {reason}; {fix} and run the same command again to "
                    "resume")
        return 1
    except MemoryError:
        print_error("pack", f"out of memory: a pair at --load_size {args.load_size} takes "
                    f"{binary_size(pair_bytes(args.load_size))}, several at once per worker; "
                    "lower --workers or --load_size, then run the same command again to resume")
        return 1
    except KeyboardInterrupt:
        print(f"fastp2p pack: interrupted; {PACK_AGAIN}", file=sys.stderr)
        return 130
    return 0


def _refuse_out_among_inputs(dataroot, out, phases: list) -> None:
    """DataError where OUT is DATAROOT or lies inside one of its phase folders: train/, val/,
    test/ or a --phase, whether or not it is there or packed by this run. Its shards and index
    would be written among the images or as a phase of their own (a re-run, and every later
    read of the dataset, would take them for input files, or for an empty split)."""
    from fastp2p.data.errors import DataError, shown_path
    from fastp2p.data.packed_index import PHASES

    if out.resolve() == dataroot.resolve():
        raise DataError(f"{shown_path(out)}: OUT must differ from DATAROOT")
    for phase in dict.fromkeys((*PHASES, *phases)):
        if out.resolve().is_relative_to((dataroot / phase).resolve()):
            raise DataError(f"{shown_path(out)}: OUT is inside DATAROOT's phase folder "
                            f"{shown_path(dataroot / phase)}, which pack reads as images; "
                            "pick an OUT outside it")


def _refuse_without_room(dataroot, out, count: int, load_size: int, gray: bool) -> None:
    """DataError, before anything is written, where a disk has no room for --synthetic
    ``count``: its pair files (MIN_PAIR_FILE_BYTES each at least) in DATAROOT/train and, with
    ``out``, their pack in OUT/train (pair_bytes each, a third more with ``gray``), less what is
    there already (pairs written, shards of an earlier pack: kept or replaced). A lower bound:
    it refuses only what cannot fit; a disk that fills up anyway is the write's error, and the
    re-run resumes."""
    from fastp2p.data.errors import DataError
    from fastp2p.data.pack import disk_of, shard_files
    from fastp2p.data.pack_plan import pair_bytes
    from fastp2p.data.synthetic import MIN_PAIR_FILE_BYTES, pairs_present

    pairs = dataroot / "train"
    wanted = [(pairs, (count - pairs_present(pairs, count)) * MIN_PAIR_FILE_BYTES,
               "the pair files")]
    if out is not None:
        earlier = sum(shard.stat().st_size for shard in shard_files(out / "train")
                      if shard.is_file())
        packed = count * pair_bytes(load_size) * (4 if gray else 3) // 3
        wanted.append((out / "train", max(0, packed - earlier),
                       f"their pack at --load_size {load_size}"))
    disks = {}  # device -> [a folder on it, its free bytes, bytes needed, what needs them]
    for folder, needed, what in wanted:
        device, free = disk_of(folder)
        disk = disks.setdefault(device, [folder, free, 0, []])
        disk[2] += needed
        disk[3].append(f"{binary_size(needed)} for {what}")
    for folder, free, needed, whats in disks.values():
        if needed > free:
            raise DataError(f"{folder}: --synthetic {count} needs at least "
                            f"{binary_size(needed)} on this disk ({', '.join(whats)}), which has "
                            f"{binary_size(free)} free; pass a smaller N, or make room")


def _verify(root, progress: bool) -> int:
    """--verify: sizes and checksums of the shards, no image decoded, so no Pillow needed (tqdm
    only for the progress bar). Every pack is checked, and every shard of each, past bad ones:
    each problem is a line on stderr, each pack's result a line on stdout, then (for several
    packs, passed or not) a total; exit 1 if anything was bad, EXIT_IN_USE where all that
    failed is packs a `fastp2p pack` is writing now (try again later, as train and test say of
    them). A pack whose lock file training refuses (a link, FIFO or folder at .pack.lock) fails
    unchecked, as training would."""
    from fastp2p.data.errors import DataError, counted
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.data.packed_index import bad_shard_files, lock_file_problem, read_index
    from fastp2p.optional_packages import MissingPackage, require_packages

    try:
        require_packages(("tqdm",) if progress else (), extra="data")
    except MissingPackage as err:
        print_error("pack", f"{err} (or pass --no-progress)")
        return 2
    try:
        found = _packs_to_verify(root)
    except DataError as error:
        print_error("pack", error)
        return 1
    failed, busy = [], 0     # "NAME (what)" of each pack that failed; how many being written
    for phase_dir, problem in found:
        if problem is None:     # a lock file training refuses fails the pack as it does
            problem = lock_file_problem(phase_dir)
        if problem is None:
            try:
                index = read_index(phase_dir)
            except DataError as error:
                problem = str(error)
        if problem is not None:     # its shards cannot be checked against an index
            print_error("pack", problem)
            failed.append(f"{phase_dir.name} (not checked)")
            busy += isinstance(problem, PackFolderBusy)
            continue
        bad = list(bad_shard_files(phase_dir, index, progress=progress))
        for _, line in bad[:MAX_LISTED]:
            print_error("pack", line)
        if len(bad) > MAX_LISTED:
            more = counted(len(bad) - MAX_LISTED, "more bad shard file")
            print_error("pack", f"{phase_dir}: and {more}, not listed")
        shards = len(index["shards"])
        bad_shards = len({number for number, _ in bad})
        print(f"{phase_dir}: {counted(index['count'], 'pair')} of {index['height']}x"
              f"{2 * index['width']} in {counted(shards, 'shard')}: "
              + (f"{bad_shards} bad" if bad else "checksums OK"))
        if bad:
            failed.append(f"{phase_dir.name} ({counted(bad_shards, 'bad shard')} of {shards})")
    if len(found) > 1:  # one line answers for OUT, however many pack lines came before
        print(f"{root}: {len(failed)} of {counted(len(found), 'pack')} failed the check: "
              f"{', '.join(failed)}" if failed
              else f"{root}: all {counted(len(found), 'pack')} passed the check")
    if not failed:
        return 0
    return EXIT_IN_USE if busy == len(failed) else 1


def _packs_to_verify(root) -> list:
    """(folder, problem) of each pack ``--verify OUT`` checks: OUT if it is one, else each of
    its folders that is one, whatever --phase named it; problem is what makes a pack one that
    cannot be checked (unfinished, or shards without their index), None for the others.
    DataError for OUT missing or a file, and for no pack at all (naming an index.json there
    that is another program's, and what makes it so); a folder that cannot be read
    (OUT/lost+found on a disk of its own, say) is named on stderr and left out, as it is no
    pack that this user could train from."""
    from fastp2p.data.errors import DataError, shown_path
    from fastp2p.data.packed_index import (foreign_index_problem, is_packed, shards_without_index,
                                           unfinished_pack_error)

    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"{shown_path(root)}: {what}; pass the OUT folder that `fastp2p pack "
                        "DATAROOT OUT` wrote")
    try:
        entries = sorted(root.iterdir())
    except OSError as error:    # a permission is made readable; another errno, its own cause
        from fastp2p.file_reads import read_error_advice
        advice = read_error_advice(error)
        raise DataError(f"{root}: cannot list this folder ({error.strerror or error})"
                        + (f"; {advice}" if advice else "")) from None
    found, folders, unreadable = [], [], []
    for folder in [root, *entries]:
        try:
            if folder is not root and not folder.is_dir():
                continue
            if folder is root and is_packed(root):
                return [(root, None)]   # its subfolders are no part of it
            problem = unfinished_pack_error(folder) or shards_without_index(folder)
            packed = is_packed(folder)
        except OSError as error:
            unreadable.append(f"{folder.name} ({error.strerror or error})")
            continue
        folders.append(folder)     # read: an index.json in it can be named
        if problem or packed:
            found.append((folder, problem))
    if unreadable:
        print(f"fastp2p pack: not checked, as they cannot be read: {', '.join(unreadable)} in "
              f"{root}", file=sys.stderr)
    if not found:
        # another program's index.json is named, with what makes it no pack's
        foreign = [problem for problem in map(foreign_index_problem, folders) if problem]
        raise DataError(f"{root}: no packed dataset here"
                        + (f": {'; '.join(foreign)}" if foreign
                           else " (no index.json in it or in its immediate subfolders)")
                        + "; pack one with `fastp2p pack DATAROOT OUT`")
    return found
