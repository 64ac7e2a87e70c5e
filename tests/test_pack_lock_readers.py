"""The pack folder's lock (`.pack.lock`) between `fastp2p pack` and what reads the pack:

- pack opened the lock file through a symbolic link planted at its name (creating a file at
  the link's target); it now refuses the link in one line naming it;
- a training reading a pack that a `fastp2p pack` was still writing was told to run that
  command again (which the running pack's lock refuses); it is now told a pack is writing it
  (its pid) and to wait;
- `fastp2p pack` rewrote a pack a training was reading, which failed the training later with a
  bare "mmap length is greater than file size", a "damaged" shard with advice to pack the old
  way again, or a missing shard taken for a full disk. A reading dataset now holds the lock
  shared, so pack refuses in one line naming the reader; a pack changed under a reader anyway
  is named as rewritten; forked workers do not keep the lock, and a pack whose lock file
  cannot be created (read-only) is read unlocked;
- a re-run that finds the pack up to date writes nothing, so it is not refused while a training
  reads the pack: `fastp2p pack DATAROOT OUT` again after adding a split packs the new split;
- a pack checking its shards holds the lock shared too: the refusal named it "a training";
- a training or `fastp2p test` refused as a pack writes its split exited 1, a failure's code,
  where pack refused in the same case with EXIT_IN_USE (75): a job could not tell it to retry
  later. Both now exit 75.
"""
import fcntl
import multiprocessing
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

import fastp2p.data.folder_lock as folder_lock
from fastp2p.cli import main
from fastp2p.command_errors import EXIT_IN_USE
from fastp2p.data import DataError, create_dataset
from fastp2p.data.folder_lock import LOCK_NAME
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed_index import INDEX_NAME, STATE_NAME
from helpers.data_helpers import data_args, make_aligned, tiny_pack_args
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv,
                                   write_aligned_dataset)

PAIRS = 6


@pytest.fixture
def packed(tmp_path):
    """(DATAROOT, OUT) of a pack of PAIRS pairs, two per shard."""
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    return data, out


def _open(out):
    return create_dataset(data_args(out, "--load_size", "16", "--crop_size", "16"), "train")


@contextmanager
def _other_process_holding(path, how):
    """A Python process that holds ``path``'s flock (``how``: "LOCK_EX" as a running pack,
    "reader" as a training's dataset, or "pack check" as a pack checking the shards it would
    keep) until the block ends; yields its pid."""
    if how == "reader":
        hold = (f"from fastp2p.data.folder_lock import ReadingLock\n"
                f"lock = ReadingLock({str(path.parent)!r})\n")
    elif how == "pack check":
        hold = (f"from fastp2p.data.folder_lock import packing_folder\n"
                f"checking = packing_folder({str(path.parent)!r})\n"
                f"checking.__enter__()\n")
    else:
        hold = (f"import fcntl, os\nfd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
                f"fcntl.flock(fd, fcntl.{how})\n")
    child = subprocess.Popen([sys.executable, "-c", hold + "print('held', flush=True)\ninput()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=path.parent.parent)
    try:
        assert child.stdout.readline() == "held\n"
        yield child.pid
    finally:
        child.communicate("")


def test_a_symbolic_link_at_the_lock_file_is_refused_not_followed(tmp_path, capsys):
    data = tmp_path / "data"
    make_aligned(data, count=2)
    target = tmp_path / "victim"
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / LOCK_NAME).symlink_to(target)
    capsys.readouterr()
    assert main(tiny_pack_args(data, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert not os.path.lexists(target)
    assert LOCK_NAME in err and "symbolic link" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "train" / "index.json").exists()


def test_a_pack_being_written_now_is_named_so_with_its_pid_not_as_unfinished(packed,
                                                                             capsys):
    _, out = packed
    phase = out / "train"
    (phase / INDEX_NAME).unlink()       # as a running pack leaves it: state file, no index
    (phase / STATE_NAME).write_text('{"load_size": 16, "shards": {}}')
    with _other_process_holding(phase / LOCK_NAME, "LOCK_EX") as pid:
        with pytest.raises(DataError) as error:
            _open(out)
        capsys.readouterr()
        # as train and test say a pack being written: try again later (it was 1, a bad pack)
        assert main(["pack", "--verify", str(out), "--no-progress"]) == EXIT_IN_USE
        verify_err = capsys.readouterr().err
    for message in (str(error.value), verify_err):
        assert f"a `fastp2p pack` is writing this pack now (pid {pid}); wait for it" in message
        assert "unfinished" not in message and str(phase) in message
    # its holder gone, it is an unfinished pack again
    with pytest.raises(DataError, match="unfinished pack"):
        _open(out)


@contextmanager
def _pack_writing(phase, first_time):
    """Another process holding ``phase``'s lock as a `fastp2p pack` writing it: rewriting the
    pack (its index.json there) or, ``first_time``, packing it (its state file, no index
    yet); yields its pid."""
    if first_time:
        (phase / INDEX_NAME).unlink()
        (phase / STATE_NAME).write_text('{"load_size": 32, "shards": {}}')
    with _other_process_holding(phase / LOCK_NAME, "LOCK_EX") as pid:
        yield pid


def _write_tiny_generator(run_folder):
    """The latest weights of tiny_test_argv's generator (unet_32, ngf 4) in ``run_folder``."""
    import torch

    import fastp2p

    run_folder.mkdir(parents=True)
    torch.save(fastp2p.UNet(3, 3, 5, ngf=4).state_dict(), run_folder / "latest_net_G.pth")


@pytest.mark.parametrize("first_time", [False, True], ids=["rewritten", "first-written"])
@pytest.mark.parametrize("command", ["train", "test"])
def test_train_and_test_of_a_split_being_packed_exit_in_use(tmp_path, capsys, command,
                                                            first_time):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    out = tmp_path / "out"
    assert main(tiny_pack_args(data, out, "--load_size", "32")) == 0
    checkpoints = tmp_path / "checkpoints"
    if command == "test":   # it says a missing checkpoint before it reads the data
        _write_tiny_generator(checkpoints / "tiny")
    argv = (train_argv(out, checkpoints) if command == "train"
            else tiny_test_argv(out, checkpoints, tmp_path / "results"))
    with _pack_writing(out / command, first_time) as pid:    # the split each one reads
        capsys.readouterr()
        assert main(argv) == EXIT_IN_USE
        err = capsys.readouterr().err
    assert (f"fastp2p {command}: error: {out / command}: a `fastp2p pack` is writing this pack "
            f"now (pid {pid}); wait for it to finish") in err
    assert err.count("\n") == 1


def _repack(data, out, per_shard):
    return main(tiny_pack_args(data, out, "--pairs-per-shard", str(per_shard)))


def test_pack_refuses_to_rewrite_a_pack_a_training_reads_and_names_it(packed, capsys):
    data, out = packed
    before = {p.name: p.read_bytes() for p in (out / "train").iterdir()}
    with _other_process_holding(out / "train" / LOCK_NAME, "reader") as pid:
        dataset, second = _open(out), _open(out)    # readers share the lock
        second.read_raw(PAIRS - 1)
        capsys.readouterr()
        assert _repack(data, out, 1) == EXIT_IN_USE
        err = capsys.readouterr().err
        pids = ", ".join(map(str, sorted([pid, os.getpid()])))
        assert (f"this pack is read now (pid {pids}) by a training or `fastp2p test`, or "
                "checked by another `fastp2p pack`, and this run would change it; stop the "
                "readers or let them end") in err and "--phase" in err
        assert err.count("\n") == 1
        assert {p.name: p.read_bytes() for p in (out / "train").iterdir()} == before
    assert _repack(data, out, 1) == EXIT_IN_USE       # this process's datasets still read it
    dataset.close()
    second.close()
    assert _repack(data, out, 1) == 0


def test_a_pack_checking_its_shards_is_named_among_the_readers_not_as_a_training(packed,
                                                                                capsys):
    """A pack holds the lock shared while it checks the shards it would keep, as a reader
    does: a pack that would write meanwhile was told "a training is reading this pack"."""
    data, out = packed
    with _other_process_holding(out / "train" / LOCK_NAME, "pack check") as pid:
        capsys.readouterr()
        assert _repack(data, out, 1) == EXIT_IN_USE
        err = one_line(capsys.readouterr().err)
    assert (f"this pack is read now (pid {pid}) by a training or `fastp2p test`, or checked by "
            "another `fastp2p pack`, and this run would change it") in err
    assert "a training is reading" not in err
    assert _repack(data, out, 1) == 0


@pytest.mark.parametrize("per_shard", [1, 3])   # more shards, and fewer (some removed)
def test_a_pack_rewritten_under_a_reader_anyway_is_named_as_rewritten(packed, per_shard):
    data, out = packed
    dataset = _open(out)
    dataset.read_raw(0)
    # as a pack copied over this one would (or a pack no lock guards): not through the lock
    (out / "train" / LOCK_NAME).unlink()
    assert _repack(data, out, per_shard) == 0
    with pytest.raises(DataError) as error:
        dataset.read_raw(PAIRS - 1)
    message = str(error.value)
    assert message.startswith(f"{out / 'train'}: the pack was rewritten while it was read")
    assert "--continue_train" in message and "damaged" not in message and "\n" not in message


def test_a_shard_gone_from_an_unchanged_pack_is_named_not_a_bare_os_error(packed):
    _, out = packed
    dataset = _open(out)
    (out / "train" / "shard-00002.u8").unlink()
    with pytest.raises(DataError, match="shard-00002.u8: shard missing; re-run `fastp2p pack"):
        dataset.read_raw(PAIRS - 1)


def _wait_then_end(ready, done):
    ready.set()
    done.wait(30)


def test_a_forked_worker_does_not_keep_the_pack_locked(packed):
    data, out = packed
    dataset = _open(out)
    fork = multiprocessing.get_context("fork")
    ready, done = fork.Event(), fork.Event()
    worker = fork.Process(target=_wait_then_end, args=(ready, done))
    worker.start()
    try:
        assert ready.wait(30)
        assert _repack(data, out, 3) == EXIT_IN_USE       # the training (this process) holds it
        dataset.close()
        assert _repack(data, out, 1) == 0       # the worker, still alive, does not
        dataset = _open(out)
    finally:
        done.set()
        worker.join(30)
    assert _repack(data, out, 2) == EXIT_IN_USE           # nor did its end unlock this process's


def test_a_pack_whose_lock_file_cannot_be_created_is_read_unlocked(packed, monkeypatch):
    _, out = packed
    (out / "train" / LOCK_NAME).unlink()
    opened = folder_lock.open_plain_file

    def read_only_folder(path, flags, mode=0o666):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        assert not flags & (os.O_WRONLY | os.O_RDWR)
        return opened(path, flags, mode)

    monkeypatch.setattr(folder_lock, "open_plain_file", read_only_folder)
    dataset = _open(out)
    assert dataset.read_raw(PAIRS - 1).shape == (16, 32, 3)
    assert not (out / "train" / LOCK_NAME).exists()


def test_a_pack_being_rewritten_is_not_read_from_its_old_index(packed):
    _, out = packed
    fd = os.open(out / "train" / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)      # as a pack rewriting it holds it, index.json there
        with pytest.raises(DataError, match=f"a `fastp2p pack` is writing this pack now "
                                            rf"\(pid {os.getpid()}\); wait"):
            _open(out)
    finally:
        os.close(fd)
    _open(out)


def test_an_up_to_date_pack_is_checked_not_rewritten_while_a_training_reads_it(packed):
    data, out = packed
    index = out / "train" / INDEX_NAME
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
              for p in (out / "train").iterdir()}
    dataset = _open(out)
    assert _repack(data, out, 2) == 0       # the same command: nothing to change
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in (out / "train").iterdir()} == before
    assert dataset.read_raw(PAIRS - 1).shape == (16, 32, 3)
    assert _repack(data, out, 3) == EXIT_IN_USE       # a change is still refused
    assert index.read_bytes() == before[INDEX_NAME][2]


def test_a_split_added_to_dataroot_is_packed_while_a_training_reads_the_packed_one(packed):
    data, out = packed
    dataset = _open(out)
    make_aligned(data, count=2, phase="test")
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    assert (out / "test" / INDEX_NAME).is_file()
    assert dataset.read_raw(0).shape == (16, 32, 3)


def test_pack_opens_the_lock_file_read_only(packed, monkeypatch):
    """A lock file a training created is its user's (mode 644): another user's pack, the pack's
    owner, must lock it without write access (this machine's tests run as root, which
    permission bits do not stop, so the open is watched instead)."""
    data, out = packed
    opened = folder_lock.open_plain_file

    def not_writable(path, flags, mode=0o666):
        if path.name == LOCK_NAME and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, mode)

    monkeypatch.setattr(folder_lock, "open_plain_file", not_writable)
    assert _repack(data, out, 3) == 0


def test_a_pack_that_takes_the_lock_between_the_probes_is_named_not_a_training(packed,
                                                                             monkeypatch):
    """The refusal probes the lock three times; another pack taking it exclusively between the
    second and the third (a few microseconds, so it is staged here) was blamed on a training."""
    data, out = packed
    flock = fcntl.flock
    attempts = []

    def another_pack_between_probes(fd, operation):
        if operation == fcntl.LOCK_EX | fcntl.LOCK_NB:
            attempts.append(operation)
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return flock(fd, operation)

    monkeypatch.setattr(folder_lock.fcntl, "flock", another_pack_between_probes)
    monkeypatch.setattr(folder_lock, "_holders",
                        lambda fd, kind: " (pid 4242)" if kind == "WRITE" and
                        len(attempts) == 2 else "")
    with pytest.raises(DataError) as error:
        pack_phase(data, out, "train", load_size=16, pairs_per_shard=3, progress=False)
    assert "another `fastp2p pack` is writing this folder (pid 4242)" in str(error.value)
    assert "training" not in str(error.value) and len(attempts) == 2
