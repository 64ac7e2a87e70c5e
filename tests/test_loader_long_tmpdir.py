"""The item loader's workers under a TMPDIR too long for their sockets (an HPC scheduler's per-job
TMPDIR, say). A worker sends each batch's tensors through a socket in the multiprocessing
temporary folder (pymp-*), which was made in TMPDIR whatever its length: past a socket address's
limit (107 bytes on Linux) the worker failed to listen ("AF_UNIX path too long") and the main
process waited for its batch forever. The folder is now made in a system temporary folder where
the sockets fit, or the run is refused in one line, as it is where multiprocessing made its
folder in TMPDIR before the loader."""
import contextlib
import multiprocessing.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from fastp2p.data import loader
from helpers.train_helpers import one_line, train_argv, write_aligned_dataset

# Long enough that no socket fits under it on any platform (a socket address holds ~100 bytes)
LONG = "t" * 120
HANG_GUARD_S = 120   # only ends a wait that would otherwise hang; never reached when it passes

_ONE_BATCH_FROM_A_WORKER = """\
import multiprocessing.util

import torch

from fastp2p.data.loader import PairLoader


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"A": torch.rand(3, 8, 8), "B": torch.rand(3, 8, 8)}


loader = PairLoader(Items(), 2, shuffle=False, num_workers=1, seed=0)
next(iter(loader))
loader.close()
print(multiprocessing.util.get_temp_dir())
"""


def _run(tmp_path, script, *argv, tmpdir):
    # cwd: not the checkout, whose fastp2p/ folder would shadow the installed package; a
    # timeout: the old loader waited for the batch forever
    return subprocess.run([sys.executable, "-c", script, *argv], cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(tmpdir)}, capture_output=True,
                          text=True, timeout=120)


def test_workers_send_batches_under_a_tmpdir_too_long_for_their_sockets(tmp_path):
    tmpdir = tmp_path / LONG
    tmpdir.mkdir()
    run = _run(tmp_path, _ONE_BATCH_FROM_A_WORKER, tmpdir=tmpdir)
    assert run.returncode == 0, run.stderr
    folder = run.stdout.strip()
    assert not folder.startswith(str(tmpdir)), folder
    # multiprocessing's own removal at exit still applies to the folder made elsewhere
    assert not os.path.exists(folder), folder
    assert os.listdir(tmpdir) == []


_TRAIN_WITHOUT_SYSTEM_TEMP_FOLDERS = """\
import sys

from fastp2p.cli import main
from fastp2p.data import loader

loader._SYSTEM_TEMP_FOLDERS = (sys.argv[1], sys.argv[2])
sys.exit(main(sys.argv[3:]))
"""


def test_train_refuses_a_tmpdir_too_long_with_no_system_temp_folder_to_use(tmp_path):
    tmpdir = tmp_path / LONG
    tmpdir.mkdir()
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    argv = train_argv(data, tmp_path / "checkpoints")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    # the system's temporary folders: one as long as TMPDIR, one missing
    run = _run(tmp_path, _TRAIN_WITHOUT_SYSTEM_TEMP_FOLDERS, str(tmpdir),
               str(tmp_path / "missing"), *argv, tmpdir=tmpdir)
    assert run.returncode == 1, run.stderr
    line = one_line(run.stderr)
    assert f"the temporary folder {tmpdir} (TMPDIR, {len(os.fsencode(tmpdir))} bytes)" in line
    assert "set TMPDIR to a folder of at most" in line, line
    assert not [name for name in os.listdir(tmpdir) if name.startswith("pymp-")]   # none made


_TRAIN_AFTER_MULTIPROCESSING_MADE_ITS_FOLDER = """\
import multiprocessing.util
import sys

from fastp2p.cli import main

multiprocessing.util.get_temp_dir()   # as a Pool, a Manager or a DataLoader used before would
sys.exit(main(sys.argv[1:]))
"""


def test_train_refuses_a_multiprocessing_folder_made_before_in_a_tmpdir_too_long(tmp_path):
    """Review 61c #1: multiprocessing makes its folder once per process; one made in TMPDIR
    before the first loader was kept whatever its length, and the worker died on 'AF_UNIX path
    too long' while train waited for its batch forever (until this test's timeout)."""
    tmpdir = tmp_path / LONG
    tmpdir.mkdir()
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    argv = train_argv(data, tmp_path / "checkpoints")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    run = _run(tmp_path, _TRAIN_AFTER_MULTIPROCESSING_MADE_ITS_FOLDER, *argv, tmpdir=tmpdir)
    assert run.returncode == 1, run.stderr
    line = one_line(run.stderr)
    assert f"the multiprocessing temporary folder {tmpdir}/pymp-" in line, line
    assert "made in this process before the data loader" in line, line
    assert "set TMPDIR to a folder of at most" in line, line


def test_two_loaders_set_up_at_once_leave_the_temporary_folder_to_tmpdir(tmp_path, monkeypatch):
    """Review 61c #2: each loader names a short folder in ``tempfile.tempdir`` while
    multiprocessing makes its own, and restores the value it read; a second one set up
    meanwhile (another thread) read the first's short folder, restored it last, and every later
    temporary file of the process went there instead of TMPDIR. The second now waits."""
    tmpdir = str(tmp_path / LONG)   # too long: the loaders name /tmp meanwhile
    monkeypatch.setattr(tempfile, "tempdir", tmpdir)
    second = threading.Thread(target=loader._share_temp_folder_with_workers)
    second_in, first_out = threading.Event(), threading.Event()

    def get_temp_dir():   # nothing made: a name whose sockets fit
        if threading.current_thread() is second:
            second_in.set()
            first_out.wait(HANG_GUARD_S)   # the first restores its value before this one
        else:
            second.start()
            second_in.wait(1)   # in vain where the second waits for the first
        return "/tmp/pymp-x"

    monkeypatch.setattr(multiprocessing.util, "get_temp_dir", get_temp_dir)
    loader._share_temp_folder_with_workers()
    first_out.set()
    second.join()
    assert tempfile.tempdir == tmpdir


@pytest.fixture
def short_folder():
    """A folder in /tmp, short enough for the sockets (tmp_path may not be)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        yield folder


def test_the_workers_folder_stays_in_a_tmpdir_where_their_sockets_fit(monkeypatch,
                                                                       short_folder):
    monkeypatch.setattr(tempfile, "tempdir", short_folder)
    assert loader._base_for_sockets() == short_folder


def test_the_longest_tmpdir_said_is_the_longest_where_the_sockets_fit(monkeypatch):
    """The refusal's 'at most N bytes': a TMPDIR of N bytes is taken, one of N + 1 refused."""
    monkeypatch.setattr(loader, "_SYSTEM_TEMP_FOLDERS", ())
    monkeypatch.setattr(tempfile, "tempdir", "/" + LONG)
    with pytest.raises(ValueError) as refused:
        loader._base_for_sockets()
    most = int(re.search(r"at most (\d+) bytes", str(refused.value)).group(1))
    monkeypatch.setattr(tempfile, "tempdir", "/" + "a" * (most - 1))
    assert loader._base_for_sockets() == "/" + "a" * (most - 1)
    monkeypatch.setattr(tempfile, "tempdir", "/" + "a" * most)
    with pytest.raises(ValueError):
        loader._base_for_sockets()


def test_the_longest_socket_path_is_the_longest_a_socket_binds(short_folder):
    longest = loader._longest_socket_path()
    for length, binds in ((longest, True), (longest + 1, False)):
        path = os.path.join(short_folder, "s" * (length - len(short_folder) - 1))
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.bind(path)
            except OSError:
                assert not binds, length
            else:
                assert binds, length


_LISTENER_PATH_LENGTHS = """\
import multiprocessing.connection
import os
import tempfile

from fastp2p.data.loader import _socket_path_length

address = multiprocessing.connection.arbitrary_address("AF_UNIX")
print(len(os.fsencode(address)), _socket_path_length(tempfile.gettempdir()))
"""


def test_the_socket_path_measured_is_as_long_as_multiprocessing_s(tmp_path, short_folder):
    run = _run(tmp_path, _LISTENER_PATH_LENGTHS, tmpdir=short_folder)
    assert run.returncode == 0, run.stderr
    made, measured = run.stdout.split()
    assert made == measured


def test_making_the_workers_folder_leaves_tempfile_s_folder_as_it_was(monkeypatch, tmp_path):
    """Under a TMPDIR too long, tempfile's folder names the system's only while
    multiprocessing makes its folder."""
    tmpdir = tmp_path / LONG
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    loader._share_temp_folder_with_workers()
    assert tempfile.tempdir == str(tmpdir)


# A user id other than root's (nobody's on most systems; it need not exist)
NOT_ROOT_UID = 65534


@contextlib.contextmanager
def _access_as_a_user_other_than_root():
    """os.access answers as for a user other than root within the block: root writes in a
    read-only folder. access() checks the real user id, so as root that one is another while
    the effective one stays root's (the process may go back; it makes files as root)."""
    if os.geteuid() != 0:
        yield
        return
    real = os.getuid()   # root's, or a set-user-ID process's caller's: given back as it was
    os.setreuid(NOT_ROOT_UID, 0)   # (the effective id is root's: its own stays)
    try:
        yield
    finally:
        os.setreuid(real, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches the real user id only as root")
def test_the_user_ids_are_given_back_as_they_were():
    """A real user id other than root's came back as root's (setreuid(0, 0)). Checked in a
    child process: this one keeps its ids whatever the helper does."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.setreuid(NOT_ROOT_UID - 1, 0)
            with _access_as_a_user_other_than_root():
                pass
            code = 0 if (os.getuid(), os.geteuid()) == (NOT_ROOT_UID - 1, 0) else 1
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


@pytest.mark.parametrize("unusable", ["file", "read-only"])
def test_a_system_temp_folder_not_a_writable_folder_is_passed_over(monkeypatch, tmp_path,
                                                                   short_folder, unusable):
    """(The read-only folder ran only as a user other than root until the mutation audit.)"""
    os.chmod(short_folder, 0o755)   # as another user too, the folders in it are found
    passed_over = os.path.join(short_folder, "x")
    if unusable == "file":
        open(passed_over, "w").close()
        os.chmod(passed_over, 0o777)   # writable and executable by all: only not a folder
    else:
        os.mkdir(passed_over, 0o555)
    usable = os.path.join(short_folder, "y")
    os.mkdir(usable)
    os.chmod(usable, 0o1777)   # as /tmp: writable by every user
    monkeypatch.setattr(loader, "_SYSTEM_TEMP_FOLDERS", (passed_over, usable))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / LONG))
    with _access_as_a_user_other_than_root():
        assert loader._base_for_sockets() == usable
