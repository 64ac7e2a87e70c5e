"""The out-of-memory line of a training step reads the latest checkpoint's manifest once: it
read it twice, once for the checkpoint it names and once for whether to advise a resume."""
from types import SimpleNamespace

import pytest

from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import tiny_networks

CPU_OOM = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                       "2147483648 bytes. Error code 12")


@pytest.mark.parametrize("latest", [None, {"step": 4}], ids=["no-checkpoint", "checkpoint"])
def test_the_out_of_memory_line_reads_the_manifest_once(tmp_path, monkeypatch, latest):
    reads = []

    def manifest(self, label):
        reads.append(label)
        return latest
    monkeypatch.setattr(CheckpointFolder, "manifest", manifest)
    netG, netD = tiny_networks()
    args = SimpleNamespace(n_epochs=1, n_epochs_decay=0, epoch_count=1, batch_size=2)
    trainer = Trainer(args, Pix2PixEngine(netG, netD), netG, netD,
                      LRSchedule("linear", 2e-4, n_epochs=1, n_epochs_decay=0),
                      CheckpointFolder(tmp_path, "run"), say=lambda line: None)
    line = trainer._out_of_memory(CPU_OOM)
    assert reads == ["latest"], reads
    if latest is None:
        assert line.endswith("then run it again; no checkpoint was written"), line
    else:
        assert line.endswith(f"then resume with --continue_train; the last good checkpoint "
                             f"{tmp_path / 'run'}/latest_* (step 4) is unchanged"), line
