"""Temporary files that a stopped `fastp2p pack --synthetic` left in DATAROOT/train.

Its workers write each pair to ``.NNNNNNN.jpg.tmp-PID.jpg`` and rename it into place; a Ctrl-C
ends them mid-pair, leaving those files (empty, or a torn JPEG). The re-run that the stop line
asks for, and `fastp2p train` on the folder, stopped on them ("not a readable image"). The re-run
removes those of processes that are gone (never a live writer's, which it is about to rename),
and listing a dataset leaves them out, naming them, without deleting anything.
"""
import subprocess
import sys

import pytest

from fastp2p.data.folders import list_images
from fastp2p.data.synthetic import pair_name, write_synthetic
from helpers.data_helpers import dead_pid, make_aligned


@pytest.fixture
def live_pid():
    """The pid of a process that runs until the test ends (another writer, say)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_rerun_removes_what_stopped_workers_left_and_keeps_a_live_writers(tmp_path, live_pid):
    folder = write_synthetic(tmp_path, 2, progress=False)
    (folder / pair_name(1)).unlink()          # the pair a stopped worker was writing
    stopped = folder / f".{pair_name(1)}.tmp-{dead_pid()}.jpg"
    stopped.touch()
    live = folder / f".{pair_name(1)}.tmp-{live_pid}.jpg"
    live.touch()
    write_synthetic(tmp_path, 2, progress=False)
    assert sorted(path.name for path in folder.iterdir()) == [live.name, pair_name(0),
                                                               pair_name(1)]


def test_listing_a_dataset_leaves_out_a_stopped_writes_temporary_files(tmp_path, capsys):
    images = make_aligned(tmp_path, count=2)
    folder = images[0].parent
    leftover = folder / f".pair02.png.tmp-{dead_pid()}.png"
    leftover.touch()
    # a name like it, but not hidden: no fastp2p temporary file, so the user's image
    own = folder / f"scan.tmp-{dead_pid()}.png"
    own.write_bytes(images[0].read_bytes())
    assert list_images(folder) == sorted(images + [own], key=str)
    assert leftover.exists()                  # reading a dataset deletes nothing in it
    err = capsys.readouterr().err
    assert (f"fastp2p: ignoring 1 temporary file in {folder} that a stopped fastp2p left (safe "
            f"to delete): {leftover.name}") in err
