"""A save killed mid-write leaves a partial file under the temporary name that the previous,
committed save of the same process used (and its manifest lists): the next run of that name
removes it once the process is gone, and the committed set still loads."""
import os
import subprocess
import sys

from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import tiny_networks

# The child imports the fastp2p this test imports (the installed package, or the suite's
# PYTHONPATH); it runs in tmp_path, so it never imports a source folder instead.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

SAVE_TWICE_KILLED_IN_THE_SECOND = """
import os, signal, sys
import fastp2p
import fastp2p.train.checkpoints as checkpoints

netG = fastp2p.UNet(3, 3, 5, ngf=4)
netD = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2)
folder = checkpoints.CheckpointFolder(sys.argv[1], "run")
folder.save(["latest"], netG, netD, {"tag": "committed"}, step=4)
real_write = checkpoints._write_durably

def write_half_then_die(obj, temp):
    with temp.file as handle:   # what a kill in the middle of torch.save leaves
        handle.write(b"PK" + bytes(1000))
    os.kill(os.getpid(), signal.SIGKILL)
checkpoints._write_durably = write_half_then_die
folder.save(["latest"], netG, netD, {"tag": "lost"}, step=8)
"""


def test_a_partial_file_under_a_committed_manifests_temporary_name_is_removed(tmp_path):
    child = subprocess.run([sys.executable, "-c", SAVE_TWICE_KILLED_IN_THE_SECOND,
                            str(tmp_path)], cwd=tmp_path, env=CHILD_ENV, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    folder = CheckpointFolder(tmp_path, "run")
    partial = [path.name for path in folder.path.glob(".*.tmp-*")]
    staged = {entry["staged"] for entry in folder.manifest("latest")["files"].values()}
    assert len(partial) == 1 and partial[0] in staged   # the name the manifest lists
    folder.prepare()   # as the next `fastp2p train` of this name does
    assert not list(folder.path.glob(".*.tmp-*"))
    assert folder.load_train_state("latest")["tag"] == "committed"
    assert folder.manifest("latest")["step"] == 4
    netG, netD = tiny_networks()
    folder.load_network(netG, "latest", "G")
    folder.load_network(netD, "latest", "D")
