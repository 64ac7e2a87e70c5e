"""A checkpoint (or loss log) write that fails says what to do next from what is on disk:
where no checkpoint was saved yet, to run again without --continue_train (QA: a first save that
failed under `ulimit -f` advised --continue_train, which then had nothing to resume and exited
1); where one is there (fastp2p's, or the reference's networks, which --continue_train loads),
to resume."""
import errno

import pytest

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset


def _file_too_large(obj, handle):
    raise OSError(errno.EFBIG, "File too large")


def test_a_failed_first_save_advises_running_again_without_continue_train(tmp_path, monkeypatch,
                                                                           capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--no_html")
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints_module.torch, "save", _file_too_large)
        assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith("fastp2p train: error:")]
    assert len(lines) == 1, captured
    assert "File too large; no checkpoint was saved yet" in lines[0], lines[0]
    assert lines[0].endswith("then run again without --continue_train"), lines[0]
    assert main(argv) == 0, capsys.readouterr().err    # the advice, followed, trains


@pytest.mark.parametrize("earlier", ["fastp2p", "reference"])
def test_a_failed_save_over_an_earlier_checkpoint_advises_resuming(tmp_path, monkeypatch,
                                                                   earlier):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    if earlier == "fastp2p":
        folder.save(["latest"], netG, netD, {"note": 1})
    else:                                   # the reference's networks, no training state
        folder.path.mkdir()
        checkpoints_module.torch.save(netG.state_dict(), folder.file("latest", "net_G.pth"))
    monkeypatch.setattr(checkpoints_module.torch, "save", _file_too_large)
    with pytest.raises(CheckpointWriteError) as raised:
        folder.save(["latest"], netG, netD, {"note": 2})
    message = str(raised.value)
    assert "the previous checkpoint files are unchanged" in message, message
    assert message.endswith("then resume with --continue_train"), message


def test_a_failed_loss_log_write_before_any_save_advises_running_again(tmp_path, monkeypatch,
                                                                       capsys):
    from fastp2p.train.loss_log import LossLog
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--no_html")

    def disk_full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
    with monkeypatch.context() as patch:
        patch.setattr(LossLog, "append", disk_full)
        assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith("fastp2p train: error:")]
    assert len(lines) == 1, captured
    assert "loss_log.csv: No space left on device; no checkpoint was written" in lines[0]
    assert lines[0].endswith("then run it again"), lines[0]
    assert main(argv) == 0, capsys.readouterr().err    # the advice, followed, trains
