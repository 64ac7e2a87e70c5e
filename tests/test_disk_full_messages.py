"""A full disk is reported as one line naming the file and "No space left on device", for a
checkpoint written through torch.save (whose zip writer hides the error behind its own) and for
`fastp2p pack`'s shards (a write's OSError names no file)."""
import builtins
import errno
import io
import os

import pytest

import fastp2p.data.pack as pack_module
import fastp2p.train.trackers as trackers_module
from fastp2p.atomic_files import replacing
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError, describe_os_error
from helpers.train_helpers import one_line, tiny_networks, train_argv, write_aligned_dataset

NO_SPACE = os.strerror(errno.ENOSPC)


class FillingFile:
    """A file whose writes fail with ENOSPC (or ``error``) once ``room`` bytes (characters, in
    text mode) are written, as a file's write does on a full disk (the OSError names no file)."""

    def __init__(self, handle, room, error=errno.ENOSPC):
        self.handle, self.room, self.error = handle, room, error

    def write(self, data):
        size = len(data) if isinstance(data, str) else memoryview(data).nbytes
        if size > self.room:
            raise OSError(self.error, os.strerror(self.error))
        self.room -= size
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def fill_the_disk_of(module, monkeypatch, room):
    """Files that ``module`` opens for writing or appending fill up after ``room`` bytes."""
    def filling_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        return FillingFile(handle, room) if "w" in mode or "a" in mode else handle
    monkeypatch.setattr(module, "open", filling_open, raising=False)


def fill_the_disk_for(path, monkeypatch, room):
    """Each write of ``path`` fills up after ``room`` bytes, however it is written: in place,
    opened by any module (builtins.open, io.open: Path.write_text's too), or through its
    temporary sibling (``fill_temporary_files``' ``named``)."""
    real_open = builtins.open

    def filling_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        of_path = isinstance(file, (str, os.PathLike)) and os.fspath(file) == os.fspath(path)
        writes = any(flag in mode for flag in "wax+")
        return FillingFile(handle, room) if of_path and writes else handle
    for module in (builtins, io):
        monkeypatch.setattr(module, "open", filling_open)
    fill_temporary_files(monkeypatch, room, named=os.path.basename(path))


def fill_temporary_files(monkeypatch, room, *, which=lambda number: True, named=None,
                         error=errno.ENOSPC):
    """The temporary files fastp2p writes and renames into place (``atomic_files``: opened on
    the descriptor that created them) fill up after ``room`` bytes (then fail with ``error``);
    ``which``: of the files opened from now on, counted from 1, the ones that do; ``named``:
    only those of a file of that name (its temporary sibling's name holds it)."""
    real_fdopen, opened = os.fdopen, []

    def filling_fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        opened.append(fd)
        of_name = named is None or f".{named}.tmp-" in os.readlink(f"/proc/self/fd/{fd}")
        return FillingFile(handle, room, error) if which(len(opened)) and of_name else handle
    monkeypatch.setattr(os, "fdopen", filling_fdopen)


@pytest.mark.parametrize("room", [0, 5000])
def test_a_full_disk_during_a_checkpoint_names_the_file_and_the_cause(tmp_path, monkeypatch,
                                                                       room):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    fill_temporary_files(monkeypatch, room)
    with pytest.raises(CheckpointWriteError) as raised:
        folder.save(["latest"], netG, netD, {"note": 1})
    message = str(raised.value)
    assert NO_SPACE in message and "unexpected pos" not in message, message
    # the checkpoint file, not the hidden temporary one it is written as (a name never given)
    assert f"{folder.path / 'latest_net_G.pth'}: {NO_SPACE}" in message, message
    assert ".tmp-" not in message, message
    assert "\n" not in message
    assert not [p for p in folder.path.iterdir() if ".tmp-" in p.name]  # nothing left behind


@pytest.mark.parametrize("error, limit", [(errno.EFBIG, "ulimit -f"), (errno.EMFILE, "ulimit -n")],
                         ids=["EFBIG", "EMFILE"])
def test_a_limit_during_a_checkpoint_is_named_as_such(tmp_path, monkeypatch, error, limit):
    """EFBIG (a job's `ulimit -f`), EMFILE (its `ulimit -n`): freeing disk space, the advice
    for a full disk, cannot help; a higher limit can."""
    netG, netD = tiny_networks()
    fill_temporary_files(monkeypatch, 5000, error=error)
    with pytest.raises(CheckpointWriteError) as raised:
        CheckpointFolder(tmp_path, "run").save(["latest"], netG, netD, {"note": 1})
    message = str(raised.value)
    assert os.strerror(error) in message and limit in message, message
    assert "Free disk space" not in message, message


def test_a_full_disk_while_packing_names_the_shard(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    fill_temporary_files(monkeypatch, 1000)   # the state's header fits, a pair (1536) not
    out = tmp_path / "packed"
    code = main(["pack", str(data), str(out), "--load_size", "16", "--workers", "1",
                 "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{out / 'train' / 'shard-'}" in err and NO_SPACE in err and "None" not in err, err


def test_a_full_disk_while_starting_the_pack_state_names_it(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    fill_temporary_files(monkeypatch, 50)
    out = tmp_path / "packed"
    assert main(["pack", str(data), str(out), "--load_size", "16", "--workers", "1",
                 "--no-progress"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"{out / 'train' / 'pack-state.json'}: {NO_SPACE}" in err, err


def test_a_packing_error_without_a_file_name_names_the_output_folder(tmp_path, monkeypatch,
                                                                      capsys):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)
    monkeypatch.setattr(pack_module, "write_phase", full)
    out = tmp_path / "packed"
    assert main(["pack", str(data), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: {NO_SPACE}" in err and "None" not in err, err


def test_a_full_disk_on_the_loss_log_names_the_log(tmp_path, monkeypatch):
    """The loss log's append fails at the buffered write on close, with an OSError naming no
    file: the error the trainer reports names the log ("?" before)."""
    from fastp2p.train import loss_log
    log = loss_log.LossLog(tmp_path / "loss_log.csv")
    fill_the_disk_of(loss_log, monkeypatch, 0)
    row = dict.fromkeys(loss_log.LOG_FIELDS, 0)
    with pytest.raises(OSError) as raised:
        log.append(row)
    assert raised.value.filename == str(tmp_path / "loss_log.csv")
    assert raised.value.errno == errno.ENOSPC


def test_a_full_disk_while_the_held_rows_are_dropped_leaves_the_log_whole(tmp_path,
                                                                         monkeypatch):
    """discard_held rewrites the log mid-training (after a resume's first save), where its
    error is only a warning: a rewrite in place truncated the log, which stayed so unless a
    later save redid it. Now the old file stays whole, and the rows stay held."""
    from fastp2p.train import loss_log
    path = tmp_path / "loss_log.csv"
    log = loss_log.LossLog(path)
    for step in range(1, 5):
        log.append({**dict.fromkeys(loss_log.LOG_FIELDS, 0.5), "epoch": 1, "step": step,
                    "images": step})
    written = path.read_bytes()
    resumed = loss_log.LossLog(path, resume_step=2)
    assert resumed.holding
    fill_the_disk_for(path, monkeypatch, 0)   # a rewrite in place, or through a temporary
    with pytest.raises(OSError) as raised:
        resumed.discard_held()
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == written and resumed.holding
    assert [entry.name for entry in tmp_path.iterdir()] == ["loss_log.csv"]  # no temporary left


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "continue_train"])
def test_a_full_disk_on_the_options_file_names_it_and_what_to_do(tmp_path, monkeypatch, capsys,
                                                                  resumed):
    """train_opt.txt, written before the loss log (a resume's with its first save): its error
    named no file ("[Errno 28] No space left on device") and said nothing of the checkpoints.
    A resume's first save is on disk by then, with options the file does not record: that
    was said as "the last good checkpoint ... is unchanged"."""
    data = write_aligned_dataset(tmp_path / "data", pairs=4)
    argv = train_argv(data, tmp_path, "--n_epochs_decay", "0", "--no_html")
    if resumed:
        assert main(argv) == 0
        argv += ["--continue_train", "--n_epochs", "2"]
    fill_temporary_files(monkeypatch, 100, named="train_opt.txt")
    capsys.readouterr()
    assert main(argv) == 1
    run = tmp_path / "tiny"
    advice = ((f"; saved {run}/latest_* (step 8) with this command line's options, but "
               "train_opt.txt still records the earlier ones", "run this same command again")
              if resumed else ("no checkpoint was written", "run it again"))
    err = one_line(capsys.readouterr().err)
    assert f"{run / 'train_opt.txt'}: {NO_SPACE}; " in err, err
    assert all(words in err for words in advice), err


def test_a_tracker_that_fails_to_start_is_not_said_as_a_failed_write(tmp_path, monkeypatch,
                                                                     capsys):
    """The trackers start beside the run's own files, but their OSError (W&B's network error,
    a ConnectionError) is no write of the run folder: it was said as one, with "Free disk
    space or fix the folder's permissions"."""
    def unreachable(*args):
        raise ConnectionError("wandb: cannot reach api.wandb.ai")

    monkeypatch.setattr(trackers_module, "open_trackers", unreachable)
    data = write_aligned_dataset(tmp_path / "data", pairs=4)
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--no_html")) == 1
    err = one_line(capsys.readouterr().err)
    assert err == "fastp2p train: error: wandb: cannot reach api.wandb.ai", err


def test_an_os_error_without_a_file_name_is_not_given_a_placeholder():
    named = OSError(errno.ENOSPC, "ignored", "/data/run/latest_net_G.pth")
    assert describe_os_error(named) == "/data/run/latest_net_G.pth: No space left on device"
    bare = OSError(errno.EINVAL, "Invalid argument")
    assert describe_os_error(bare) == "[Errno 22] Invalid argument"


def test_a_full_disk_at_the_pack_index_names_the_index(tmp_path, monkeypatch, capsys):
    """The disk fills at the very end, every shard written: the index's write failed naming
    no file, and the line named the OUT folder."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    # the temporary files: 1 pack-state.json, 2 the one shard, 3 index.json
    fill_temporary_files(monkeypatch, 0, which=lambda number: number == 3)
    out = tmp_path / "packed"
    assert main(["pack", str(data), str(out), "--load_size", "16", "--workers", "1",
                 "--pairs-per-shard", "4", "--no-progress"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"{out / 'train' / 'index.json'}: {NO_SPACE}" in err, err
    assert (out / "train" / "shard-00000.u8").is_file()


@pytest.mark.parametrize("full", [2, 3], ids=["colour-shard", "gray-shard"])
def test_a_full_disk_at_one_of_a_shards_files_names_that_file(tmp_path, monkeypatch, capsys,
                                                              full):
    """A --gray shard writes two files, both open at once: a write to the colour shard (the
    first opened) failing was named after the gray shard, the last opened."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    # the temporary files: 1 pack-state.json, 2 the colour shard, 3 its gray shard
    fill_temporary_files(monkeypatch, 100, which=lambda number: number == full)
    out = tmp_path / "packed"
    assert main(["pack", str(data), str(out), "--load_size", "16", "--workers", "1",
                 "--gray", "--no-progress"]) == 1
    err = one_line(capsys.readouterr().err)
    name = "shard-00000.u8" if full == 2 else "gray-00000.u8"
    assert f"{out / 'train' / name}: {NO_SPACE}" in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="Linux's /dev/full")
def test_a_discarded_files_buffer_failing_too_does_not_replace_the_error_that_ended_it(
        tmp_path):
    """Two files written at once on a full disk (a --gray shard and its gray shard): the inner
    one's write fails, and the outer one's buffered bytes fail too as it is thrown away; that
    second error replaced the first, naming the file whose write had not failed."""
    colour, gray = tmp_path / "shard-00000.u8", tmp_path / "gray-00000.u8"
    with pytest.raises(OSError) as raised:
        with replacing(colour) as outer:
            outer.write(os.urandom(64))   # held in its buffer
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, outer.fileno())   # its disk is full from now on
            os.close(full)
            with replacing(gray):
                raise OSError(errno.ENOSPC, NO_SPACE)
    assert (raised.value.filename, colour.exists(), gray.exists()) == (str(gray), False, False)
