"""The item loader's workers under a TMPDIR too long for their sockets (an HPC scheduler's per-job
TMPDIR, say). A worker sends each batch's tensors through a socket in the multiprocessing
temporary folder (pymp-*), which was made in TMPDIR whatever its length: past a socket address's
limit (107 bytes on Linux) the worker failed to listen ("AF_UNIX path too long") and the main
process waited for its batch forever. The folder is now made in a system temporary folder where
the sockets fit, or the run is refused in one line, as it is where multiprocessing made its
folder in TMPDIR before the loader."""
import multiprocessing.util
import os
import subprocess
import sys
import tempfile
import threading

from helpers.train_helpers import one_line, train_argv, write_aligned_dataset
from fastp2p.data import loader

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
