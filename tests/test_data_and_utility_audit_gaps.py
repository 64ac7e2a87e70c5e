"""Gaps a mutation audit of the data package's small modules and the top-level utilities found:
behaviours each of these modules documents that no other test pinned down (a mutant that changed
them left the whole suite passing). Each test names what it guards; all are fast and need no
GPU."""
import errno
import json
import os
import random

import pytest

from fastp2p import cache_folder, cpu_info, file_reads, json_files


# --- fastp2p.cache_folder --------------------------------------------------------------------

def test_the_cache_folder_without_fastp2p_cache_is_under_the_home_folder(tmp_path, monkeypatch):
    """~/.cache/fastp2p, not ~/.cache itself (the embedded dataset and the measured forms would
    land among other programs' caches)."""
    home = tmp_path / f"home{random.randrange(10 ** 6)}"
    monkeypatch.delenv("FASTP2P_CACHE", raising=False)
    monkeypatch.setattr(cache_folder.Path, "home", classmethod(lambda cls: home))
    assert cache_folder.cache_root() == home / ".cache" / "fastp2p"
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "given"))
    assert cache_folder.cache_root() == tmp_path / "given"


@pytest.mark.parametrize("error", [KeyError("getpwuid(): uid not found: 12345"),
                                   RuntimeError("Could not determine home directory.")],
                         ids=["older-python", "python-3.12"])
def test_an_unknown_home_folder_is_no_cache_folder(monkeypatch, error):
    """A container without HOME nor a passwd entry: Python before 3.12 raises pwd's KeyError,
    3.12 a RuntimeError; either is NoCacheFolder (an OSError), never a KeyError traceback."""
    def no_home(cls):
        raise error
    monkeypatch.delenv("FASTP2P_CACHE", raising=False)
    monkeypatch.setattr(cache_folder.Path, "home", classmethod(no_home))
    with pytest.raises(cache_folder.NoCacheFolder, match="set FASTP2P_CACHE"):
        cache_folder.cache_root()


@pytest.mark.parametrize("value, blanks", [(" ", "blanks only"), ("\t \t", "blanks only"),
                                           (" /tmp/cache", "with blanks at its ends")],
                         ids=["blank", "tab", "blank-before-a-folder"])
def test_a_blank_fastp2p_cache_is_one_line_naming_it_and_makes_no_folder(tmp_path, monkeypatch,
                                                                       value, blanks):
    """Blanks only, or before a folder, made a folder named " " in the current folder,
    silently (QA limits2 #5)."""
    from fastp2p.data import DataError
    from fastp2p.data.default_dataset import default_dataroot

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTP2P_CACHE", value)
    with pytest.raises(DataError) as refused:
        default_dataroot()
    message = str(refused.value)
    assert message.startswith(f"FASTP2P_CACHE is {value!r}, {blanks}") and "\n" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("below", ["", "cache"], ids=["the-file", "a-folder-below-it"])
def test_a_fastp2p_cache_naming_a_file_is_one_line_naming_it(tmp_path, monkeypatch, below):
    """It was "cannot create the cache folder ... ([Errno 17] File exists: ...)"."""
    file = tmp_path / "afile"
    file.write_bytes(os.urandom(8))
    monkeypatch.setenv("FASTP2P_CACHE", str(file / below) if below else str(file))
    with pytest.raises(cache_folder.NoCacheFolder) as refused:
        cache_folder.cache_root()
    assert str(refused.value).startswith(f"FASTP2P_CACHE={file}{'/' + below if below else ''}: "
                                         f"{file} is no folder; set FASTP2P_CACHE to a folder")


# --- fastp2p.cpu_info ------------------------------------------------------------------------

def test_a_family_without_a_model_number_names_the_cpu_alone():
    """Both numbers or neither: a family line without a model line gives the name, not a
    KeyError."""
    family = random.randrange(6, 30)
    text = f"processor\t: 0\ncpu family\t: {family}\nmodel name\t: Some CPU {family}\n"
    assert cpu_info.model_from_cpuinfo(text) == f"Some CPU {family}"


def test_only_the_first_processor_is_read():
    """A later processor's lines never fill in what the first one lacks."""
    first = "processor\t: 0\nmodel name\t: Little Core\n"
    second = "processor\t: 1\ncpu family\t: 6\nmodel\t\t: 151\nmodel name\t: Big Core\n"
    assert cpu_info.model_from_cpuinfo(f"{first}\n{second}") == "Little Core"


def test_the_usable_cpus_are_the_affinity_masks(monkeypatch):
    """taskset, cpusets and container limits: the affinity mask counts, not the machine's
    cores (the default worker counts and the bounds on --num_threads follow it)."""
    cores = random.randrange(1, 5)
    monkeypatch.setattr(cpu_info.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(cpu_info.os, "cpu_count", lambda: 64)
    assert cpu_info.usable_cpus() == cores


def test_without_proc_cpuinfo_the_model_is_platforms_processor(monkeypatch):
    def unreadable(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    monkeypatch.setattr(cpu_info.Path, "read_text", unreadable)
    monkeypatch.setattr(cpu_info.platform, "processor", lambda: "Some Processor")
    monkeypatch.setattr(cpu_info.platform, "machine", lambda: "x86_64")
    assert cpu_info.cpu_model() == "Some Processor"


# --- fastp2p.json_files / fastp2p.file_reads -------------------------------------------------

def test_read_json_refuses_a_file_over_its_limit(tmp_path):
    values = [random.random() for _ in range(50)]
    path = tmp_path / "index.json"
    path.write_text(json.dumps(values))
    assert json_files.read_json(path) == values
    assert json_files.read_json(path, max_bytes=path.stat().st_size) == values
    with pytest.raises(file_reads.FileTooLarge):
        json_files.read_json(path, max_bytes=path.stat().st_size - 1)


def test_read_json_refuses_text_that_is_not_utf8(tmp_path):
    """A Latin-1 file is not JSON fastp2p wrote: a ValueError, not its characters guessed."""
    path = tmp_path / "state.json"
    path.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ValueError):
        json_files.read_json(path)


@pytest.mark.parametrize("number", [errno.EACCES, errno.EPERM], ids=errno.errorcode.get)
def test_both_permission_errors_get_the_permission_advice(number):
    """EPERM too: what an immutable file (chattr +i) or a security module's refusal gives."""
    advice = file_reads.read_error_advice(OSError(number, os.strerror(number)))
    assert advice is not None and "readable by this user" in advice


def test_an_nfs_stale_handle_gets_its_advice():
    advice = file_reads.read_error_advice(OSError(errno.ESTALE, os.strerror(errno.ESTALE)))
    assert advice is not None and "NFS" in advice


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd") or not hasattr(os, "mkfifo"),
                    reason="needs /proc/self/fd and FIFOs (Linux)")
def test_a_refused_special_file_or_folder_leaves_no_descriptor_open(tmp_path):
    """open_to_read closes what it opened before refusing it: a scan over a folder of planted
    FIFOs ran out of descriptors otherwise."""
    fifo = tmp_path / f"planted{random.randrange(10 ** 6)}.json"
    os.mkfifo(fifo)
    folder = tmp_path / "a_folder.json"
    folder.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(file_reads.NotAFileToRead):
            file_reads.open_to_read(fifo)
        with pytest.raises(IsADirectoryError):
            file_reads.open_to_read(folder)
    assert len(os.listdir("/proc/self/fd")) == before


# --- fastp2p.terminal / fastp2p.byte_sizes ---------------------------------------------------

def test_is_terminal_is_false_for_none_a_closed_stream_and_no_isatty(tmp_path):
    """Python started without stderr (None), a stream closed under the command, or a stream
    object without isatty: no progress bar, never an AttributeError or ValueError."""
    from fastp2p.terminal import is_terminal

    assert is_terminal(None) is False
    assert is_terminal(object()) is False
    log = open(tmp_path / "log.txt", "w")
    assert is_terminal(log) is False
    log.close()
    assert is_terminal(log) is False


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_is_terminal_is_true_for_a_terminal():
    from fastp2p.terminal import is_terminal

    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", closefd=False) as stream:
            assert is_terminal(stream) is True
    finally:
        os.close(controller)
        os.close(terminal)


# --- fastp2p.stops_deferred ------------------------------------------------------------------

def test_a_sigterm_at_its_default_still_ends_the_process_at_once_inside_the_block(tmp_path):
    """Only a handler that raises is held back: SIGTERM at SIG_DFL ends the process where it
    arrives (nothing half done in it), not after the block."""
    import subprocess
    import sys

    script = ("import os, signal, sys\n"
              "from fastp2p.stops_deferred import stops_deferred\n"
              "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
              "with stops_deferred((signal.SIGINT, signal.SIGTERM)):\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    print('still in the block', flush=True)\n")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == -15, (result.returncode, result.stdout, result.stderr)
    assert "still in the block" not in result.stdout


# --- fastp2p.data.dataroot_checks ------------------------------------------------------------

def test_dataroot_with_task_is_refused(tmp_path):
    """--task names an embedded dataset: with --dataroot one of them would be ignored."""
    import argparse

    from fastp2p.data.dataroot_checks import refuse_dataroot_options
    from fastp2p.data.errors import DataError
    from fastp2p.data.options import TASKS

    (tmp_path / "train").mkdir()
    task = random.choice(TASKS)
    with pytest.raises(DataError, match=f"--task {task} chooses an embedded dataset"):
        refuse_dataroot_options(argparse.Namespace(dataroot=str(tmp_path), task=task))
    refuse_dataroot_options(argparse.Namespace(dataroot=str(tmp_path), task=None))
    refuse_dataroot_options(argparse.Namespace(dataroot=None, task=task))


# --- fastp2p.data.create ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 0.5])
def test_create_dataset_refuses_a_max_dataset_size_below_one(tmp_path, size):
    """The Python API's own check (the CLI's option type refuses it first): a limit of 0 pairs,
    or int(0.5), made an empty dataset instead of an error."""
    from fastp2p.data import create_dataset
    from fastp2p.data.errors import DataError
    from helpers.data_helpers import data_args, make_aligned

    make_aligned(tmp_path, count=2, width=random.randrange(8, 12), height=8)
    args = data_args(tmp_path, "--load_size", "8", "--crop_size", "8")
    assert len(create_dataset(args, "train")) == 2
    args.max_dataset_size = size
    with pytest.raises(DataError, match="--max_dataset_size must be >= 1"):
        create_dataset(args, "train")


def test_the_packs_load_size_is_followed_only_where_none_was_given(tmp_path):
    """follow_packed_load_size: no --load_size given -> the pack's (a line says so); one given
    is kept. packed_resize_note: only a load size below the pack's is a second resize."""
    from fastp2p.cli import main
    from fastp2p.data.create import follow_packed_load_size, packed_resize_note
    from helpers.data_helpers import data_args, make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=2, width=random.randrange(18, 24), height=20)
    out = tmp_path / "out"
    assert main(tiny_pack_args(tmp_path / "data", out)) == 0     # packed at load size 16

    default = data_args(out)
    assert follow_packed_load_size(default, "train", given=False) == (
        f"--load_size 16 (not the default 286): {out / 'train'} was packed at that size; pass "
        "--load_size to choose a smaller one")
    assert default.load_size == 16
    assert packed_resize_note(default, "train") is None      # the pack's own size
    assert follow_packed_load_size(default, "train", given=False) is None   # nothing to say

    given = data_args(out, "--load_size", "12", "--crop_size", "12")
    assert follow_packed_load_size(given, "train", given=True) is None
    assert given.load_size == 12
    assert "resized again to 12" in packed_resize_note(given, "train")


# --- fastp2p.data.folder_lock ----------------------------------------------------------------

def test_a_reader_of_a_pack_without_a_lock_file_creates_and_holds_one(tmp_path):
    """A pack copied without its .pack.lock (or made before it existed) is still locked while
    read: a pack that would rewrite it is refused until the reader lets go."""
    from fastp2p.data.errors import DataError
    from fastp2p.data.folder_lock import LOCK_NAME, ReadingLock, packing_folder

    folder = tmp_path / f"train{random.randrange(100)}"
    folder.mkdir()
    reader = ReadingLock(folder)
    assert (folder / LOCK_NAME).is_file()
    with packing_folder(folder) as lock_exclusively:
        with pytest.raises(DataError, match="this pack is read now"):
            lock_exclusively()
    reader.close()
    with packing_folder(folder) as lock_exclusively:
        lock_exclusively()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_keep_its_parents_reading_lock(tmp_path):
    """A DataLoader worker forked while the training reads: once the training lets go of the
    pack, a pack may rewrite it, though the worker still lives."""
    from fastp2p.data.folder_lock import ReadingLock, packing_folder

    folder = tmp_path / "train"
    folder.mkdir()
    reader = ReadingLock(folder)
    forked, go_on = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:    # the child: say it is running (its fork hooks have run), wait, end
        try:
            os.write(forked[1], b"x")
            os.read(go_on[0], 1)
        finally:
            os._exit(0)
    try:
        assert os.read(forked[0], 1) == b"x"
        reader.close()
        with packing_folder(folder) as lock_exclusively:
            lock_exclusively()      # the child's copy of the descriptor holds nothing
    finally:
        os.write(go_on[1], b"x")
        os.waitpid(pid, 0)
        for fd in (*forked, *go_on):
            os.close(fd)


def test_the_lock_file_is_readable_by_other_users(tmp_path):
    """A lock file a training created must not keep another user's `fastp2p pack` out: it
    opens it read-only, so the file is created 644 (under the usual umask 022)."""
    from fastp2p.data.folder_lock import LOCK_NAME, ReadingLock, packing_folder

    for name in ("read", "packed"):
        (tmp_path / name).mkdir()
    old = os.umask(0o022)
    try:
        ReadingLock(tmp_path / "read").close()
        with packing_folder(tmp_path / "packed"):
            pass
    finally:
        os.umask(old)
    for name in ("read", "packed"):
        assert (tmp_path / name / LOCK_NAME).stat().st_mode & 0o777 == 0o644


# --- fastp2p.data.pack_command ---------------------------------------------------------------

@pytest.mark.parametrize("bad", [10, 11])
def test_verify_lists_ten_bad_shard_lines_and_counts_only_those_past_them(tmp_path, capsys,
                                                                          monkeypatch, bad):
    """MAX_LISTED lines, then "and N more" only for an N of at least 1."""
    from fastp2p.cli import main
    from fastp2p.data import packed_index
    from helpers.data_helpers import make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=2, width=random.randrange(18, 24), height=20)
    out = tmp_path / "out"
    assert main(tiny_pack_args(tmp_path / "data", out)) == 0
    capsys.readouterr()
    monkeypatch.setattr(packed_index, "bad_shard_files", lambda folder, index, progress: [
        (number, f"{folder}/shard-{number:05d}.u8: planted problem {number}")
        for number in range(bad)])
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len([line for line in lines if "planted problem" in line]) == 10
    more = [line for line in lines if "not listed" in line]
    assert more == ([] if bad == 10 else [
        f"fastp2p pack: error: {out / 'train'}: and 1 more bad shard file, not listed"])


def test_pack_refuses_an_out_that_is_dataroot_spelled_another_way(tmp_path, capsys):
    """OUT is DATAROOT through "..": refused before anything is written (its shards would land
    among the source images)."""
    from fastp2p.cli import main
    from helpers.data_helpers import make_aligned, tiny_pack_args

    data = tmp_path / "data"
    make_aligned(data, count=2, width=random.randrange(18, 24), height=20)
    before = sorted(p.name for p in (data / "train").iterdir())
    assert main(tiny_pack_args(data, data / "train" / "..")) == 1
    assert "OUT must differ from DATAROOT" in capsys.readouterr().err
    assert sorted(p.name for p in (data / "train").iterdir()) == before


def test_a_phase_named_twice_is_packed_once(tmp_path, capsys):
    from fastp2p.cli import main
    from helpers.data_helpers import make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=3, width=random.randrange(18, 24), height=20)
    out = tmp_path / "out"
    assert main(tiny_pack_args(tmp_path / "data", out, "--phase", "train", "train")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{out / 'train'}: 3 pairs in "), lines


def test_the_synthetic_room_check_counts_the_gray_halves(tmp_path, monkeypatch):
    """--synthetic N --gray stores a third more (gray-NNNNN.u8): a disk with room for the
    colour pack alone is refused before anything is written."""
    from fastp2p.data import pack
    from fastp2p.data.errors import DataError
    from fastp2p.data.pack_command import _refuse_without_room
    from fastp2p.data.pack_plan import pair_bytes
    from fastp2p.data.synthetic import MIN_PAIR_FILE_BYTES

    count, load_size = random.randrange(50, 500), random.choice([64, 128, 286])
    colour = count * MIN_PAIR_FILE_BYTES + count * pair_bytes(load_size)
    monkeypatch.setattr(pack, "disk_of", lambda folder: (7, colour))   # one disk, just enough
    data, out = tmp_path / "data", tmp_path / "out"
    _refuse_without_room(data, out, count, load_size, gray=False)
    with pytest.raises(DataError, match=f"--synthetic {count} needs at least"):
        _refuse_without_room(data, out, count, load_size, gray=True)


@pytest.mark.parametrize("filename", [True, False], ids=["names-the-file", "names-out"])
def test_a_write_error_names_its_file_or_else_out(tmp_path, capsys, monkeypatch, filename):
    """A full disk while writing shards: the line names the file the OSError names, else OUT
    (the folder written to), never DATAROOT."""
    from fastp2p.cli import main
    from fastp2p.data import pack
    from helpers.data_helpers import make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=2, width=random.randrange(18, 24), height=20)
    out = tmp_path / "out"
    shard = out / "train" / f"shard-{random.randrange(100):05d}.u8"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      *([str(shard)] if filename else []))
    monkeypatch.setattr(pack, "write_phase", disk_full)
    assert main(tiny_pack_args(tmp_path / "data", out)) == 1
    named = shard if filename else out
    assert capsys.readouterr().err == (
        f"fastp2p pack: error: {named}: {os.strerror(errno.ENOSPC)}; fix it and run the same "
        "command again to resume\n")


def test_stops_deferred_off_the_main_thread_defers_nothing_and_raises_nothing():
    """Only the main thread may set a handler: elsewhere the block just runs."""
    import signal
    import threading

    from fastp2p.stops_deferred import stops_deferred

    before = signal.getsignal(signal.SIGINT)
    ran, failed = [], []

    def work():
        try:
            with stops_deferred((signal.SIGINT, signal.SIGTERM)):
                ran.append(random.random())
        except BaseException as error:  # noqa: B036 - reported below
            failed.append(error)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert not failed and len(ran) == 1
    assert signal.getsignal(signal.SIGINT) is before


def test_verify_counts_a_shard_with_two_bad_files_once(tmp_path, capsys, monkeypatch):
    """A --gray pack's shard-N.u8 and gray-N.u8 both bad: one bad shard, two lines."""
    from fastp2p.cli import main
    from fastp2p.data import packed_index
    from helpers.data_helpers import make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=2, width=random.randrange(18, 24), height=20)
    out = tmp_path / "out"
    assert main(tiny_pack_args(tmp_path / "data", out, "--pairs-per-shard", "1")) == 0
    capsys.readouterr()
    number = random.randrange(2)
    monkeypatch.setattr(packed_index, "bad_shard_files", lambda folder, index, progress: [
        (number, f"{folder}/shard-{number:05d}.u8: wrong size"),
        (number, f"{folder}/gray-{number:05d}.u8: wrong size")])
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("wrong size") == 2
    assert captured.out.strip().endswith(": 1 bad"), captured.out


# --- fastp2p.option_types --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "0", "-1e-3", "x"])
def test_positive_float_refuses_infinity_nan_and_non_positive_values(text):
    """--aspect_ratio inf divided a side by infinity (a 0-pixel image) deep in test."""
    import argparse

    from fastp2p.option_types import positive_float

    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number > 0"):
        positive_float(text)
    value = random.uniform(0.1, 10)
    assert positive_float(repr(value)) == value


def test_dataset_size_refuses_a_fraction_and_gives_whole_numbers_as_ints():
    """--max_dataset_size 2.5 was 2 pairs without a word."""
    import argparse
    import math

    from fastp2p.option_types import dataset_size

    count = random.randrange(1, 10 ** 6)
    with pytest.raises(argparse.ArgumentTypeError, match="must be a whole number >= 1"):
        dataset_size(f"{count}.5")
    for text in (str(count), f"{count}.0"):
        value = dataset_size(text)
        assert value == count and type(value) is int
    assert dataset_size("inf") == math.inf


@pytest.mark.parametrize("text", ["", ".", "..", "a/b", "run\0name"])
def test_plain_name_refuses_paths_dots_and_nul(text):
    """--name ..: the run folder would be the checkpoints folder's parent; a NUL byte failed
    in os calls ("embedded null byte"), naming no option."""
    import argparse

    from fastp2p.option_types import plain_name

    with pytest.raises(argparse.ArgumentTypeError, match="must be a plain name"):
        plain_name(text)
    name = f"run_{random.randrange(10 ** 6)}..x"
    assert plain_name(name) == name


# --- fastp2p.info ----------------------------------------------------------------------------

def test_info_says_triton_on_the_cpu_runs_through_the_interpreter(monkeypatch):
    import torch

    import fastp2p.ops
    from fastp2p import info
    from fastp2p.ops.backends import cpp as cpp_backend

    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setattr(fastp2p.ops, "backend_name_for", lambda device: "triton")
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: False)
    assert info._backend_line(torch.device("cpu")) == (
        "triton: the Triton kernels through the interpreter (TRITON_INTERPRET=1; slow)")
    assert info._backend_line(torch.device("cuda")) == "triton: the Triton kernels"


def test_info_says_none_where_the_dispatcher_refuses_the_device(monkeypatch):
    """A FASTP2P_BACKEND the dispatcher refuses is a line of `fastp2p info`, not a traceback."""
    import torch

    import fastp2p.ops
    from fastp2p import info

    why = f"FASTP2P_BACKEND=bogus{random.randrange(100)} is not a backend"

    def refuse(device):
        raise ValueError(why)
    monkeypatch.setattr(fastp2p.ops, "backend_name_for", refuse)
    assert info._backend_line(torch.device("cpu")) == f"none: {why}"


def test_a_dataset_folder_named_like_a_split_is_still_a_dataset_folder(tmp_path):
    """--dataroot .../train holding a val/ split of its own is a dataset root whatever its
    name: a missing test split is said as such, not "a train split, pass its parent"."""
    from fastp2p.data import create_dataset
    from fastp2p.data.errors import DataError
    from helpers.data_helpers import data_args, make_aligned

    root = tmp_path / "train"
    make_aligned(root, count=2, width=random.randrange(8, 12), height=8, phase="val")
    with pytest.raises(DataError) as refused:
        create_dataset(data_args(root), "test")
    assert str(refused.value).startswith(f"{root / 'test'}: folder not found")


def test_pack_refuses_zero_pairs_per_shard(tmp_path, capsys):
    from fastp2p.cli import main
    from helpers.data_helpers import make_aligned, tiny_pack_args

    make_aligned(tmp_path / "data", count=2, width=random.randrange(18, 24), height=20)
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out", "--pairs-per-shard", "0")) == 2
    # in argparse's words, as pack's other values are refused
    assert "error: argument --pairs-per-shard: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pack_names_a_missing_dataroot(tmp_path, capsys):
    from fastp2p.cli import main
    from helpers.data_helpers import tiny_pack_args

    missing = tmp_path / f"no_data{random.randrange(100)}"
    assert main(tiny_pack_args(missing, tmp_path / "out")) == 1
    assert capsys.readouterr().err.startswith(
        f"fastp2p pack: error: {missing}: DATAROOT folder not found; point it at a dataset folder")
    assert not (tmp_path / "out").exists()


# --- fastp2p.data.transforms / fastp2p.data.errors -------------------------------------------

@pytest.mark.parametrize("side", ["a_channels", "b_channels"])
def test_preprocess_refuses_a_channel_count_other_than_one_or_three(side):
    from fastp2p.data.errors import DataError
    from fastp2p.data.transforms import Preprocess

    for channels in (0, 2, 4):
        with pytest.raises(DataError, match=f"must have 1 or 3 channels, got {channels}"):
            Preprocess(**{side: channels})


def test_one_bad_file_says_no_more(tmp_path):
    """"(N more bad files in ...)" only where there are more; one problem is one clause."""
    from fastp2p.data.errors import SKIP_HINT, DataError, raise_or_report

    path = tmp_path / f"pair{random.randrange(100)}.png"
    with pytest.raises(DataError) as one:
        raise_or_report([(path, "cannot be decoded")], False, "train")
    assert str(one.value) == f"{path}: cannot be decoded; {SKIP_HINT}"
    with pytest.raises(DataError) as two:
        raise_or_report([(path, "cannot be decoded"), (tmp_path / "b.png", "empty")], False,
                        "train")
    assert str(two.value).endswith(f"{SKIP_HINT} (1 more bad file in train by their headers "
                                   "alone; --skip-bad decodes every image and may find more)")


def test_info_does_not_call_a_blank_fastp2p_backend_forced(monkeypatch):
    """FASTP2P_BACKEND set to blanks forces nothing (the dispatcher strips it): the line says
    why the backend was chosen, not "forced by FASTP2P_BACKEND"."""
    import torch

    import fastp2p.ops
    from fastp2p import info

    monkeypatch.setenv("FASTP2P_BACKEND", " " * random.randrange(1, 4))
    monkeypatch.setattr(fastp2p.ops, "backend_name_for", lambda device: "cpp")
    assert info._backend_line(torch.device("cpu")).startswith(
        "cpp: the CPU kernels of fastp2p._C")
