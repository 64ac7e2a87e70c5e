"""What a damaged loss log, a failing training page and a killed data loader worker do to a run:
the first two are one warning line and training goes on with every checkpoint; the last stops
with one line, exit code 1, and the last good checkpoint intact."""
import errno
import os
import signal

import torch

import fastp2p.data.datasets as datasets_module
import fastp2p.train.training_page as training_page_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.loss_log import LOG_FIELDS, LossLog
from fastp2p.train.training_page import TrainingPage
from helpers.train_helpers import train_argv, write_aligned_dataset


def _steps_saved(checkpoints, label="latest"):
    return CheckpointFolder(checkpoints, "tiny").manifest(label)["step"]


def test_a_damaged_loss_log_row_is_left_out_on_resume(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0")) == 0
    log = checkpoints / "tiny" / "loss_log.csv"
    good_rows = log.read_text().count("\n") - 1
    # a power loss mid-append: the last row cut inside a number, no newline
    with open(log, "a") as handle:
        handle.write("1,4,4,0.0002,0.70")
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--n_epochs", "2",
                           "--continue_train")) == 0
    out, err = capsys.readouterr()   # a warning: on stderr, not among the progress lines
    assert "damaged row" not in out and err.count("damaged row") == 1 and "1 damaged row(s)" in err
    assert _steps_saved(checkpoints) == 8 and _steps_saved(checkpoints, "2") == 8
    reread = LossLog(log, resume_step=8, say=lambda line: None).rows
    assert len(reread) == good_rows + 4  # the 4 rows of epoch 2 follow the good ones
    assert all(set(row) == set(LOG_FIELDS) for row in reread)
    assert (checkpoints / "tiny" / "web" / "loss.png").exists()


def test_loss_log_rows_that_do_not_parse_are_counted(tmp_path):
    log = tmp_path / "loss_log.csv"
    good = "1,2,2,0.0002,0.5,30.0,0.6,0.7,12.5"
    log.write_text(",".join(LOG_FIELDS) + "\n" + good + "\n"
                   + "1,3,3,0.0002,0.5,x,0.6,0.7,12.5\n"    # not a number
                   + "1,4,4,0.0002,0.5,30.0,0.6,0.7,12.5,9\n"  # one value too many
                   + "\x00\x00\x00\n"                        # zeros a power loss left
                   + "\n" + good.replace(",2,2,", ",5,5,") + "\n"
                   + "1,6,6,0.0002")                         # cut short
    said = []
    rows = LossLog(log, resume_step=100, say=said.append).rows
    assert [row["step"] for row in rows] == [2, 5]
    assert rows[0]["G_L1"] == 30.0 and rows[0]["epoch"] == 1
    assert len(said) == 1 and "4 damaged row(s)" in said[0]
    assert log.read_text().count("\n") == 3  # the header and the two good rows, rewritten


def _refresh_fails(self, loss_log):
    raise ValueError("matplotlib could not draw this")


def _disk_full(image, path):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_failing_training_page_is_a_warning_and_every_checkpoint_is_written(tmp_path,
                                                                             monkeypatch,
                                                                             capsys):
    data = write_aligned_dataset(tmp_path / "data")
    monkeypatch.setattr(TrainingPage, "refresh", _refresh_fails)
    monkeypatch.setattr(training_page_module, "save_image", _disk_full)
    checkpoints = tmp_path / "ckpt"
    # samples at images 3 and 6 and the final one; page refreshes after each epoch
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1")) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, warnings  # one per distinct failure
    assert any("No space left on device" in line for line in warnings)
    assert any("ValueError: matplotlib could not draw this" in line for line in warnings)
    for label in ("latest", "1", "2"):
        assert _steps_saved(checkpoints, label) == (4 if label == "1" else 8)


def test_a_killed_loader_worker_ends_with_one_line_and_the_checkpoint_intact(tmp_path,
                                                                           monkeypatch,
                                                                           capfd):
    data = write_aligned_dataset(tmp_path / "data")
    checkpoints = tmp_path / "ckpt"
    marker = tmp_path / "epoch1-saved"
    original_load = datasets_module.PairDataset.load

    def load_or_oom_kill(self, index, rng):
        if marker.exists():  # in a worker process, once epoch 1 is saved
            os.kill(os.getpid(), signal.SIGKILL)
        return original_load(self, index, rng)
    monkeypatch.setattr(datasets_module.PairDataset, "load", load_or_oom_kill)
    from fastp2p.train.trainer import Trainer
    original_save = Trainer.save

    def save_then_arm(self, labels, **options):
        original_save(self, labels, **options)
        if self.progress.epoch == 2:
            self.writer.wait()
            marker.touch()
    monkeypatch.setattr(Trainer, "save", save_then_arm)
    argv = train_argv(data, checkpoints)
    at = argv.index("--num_threads")
    argv[at + 1] = "2"  # two loader worker processes
    assert main(argv) == 1
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if "data loader worker died" in line]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    assert "lower --num_threads" in lines[0] and "--continue_train" in lines[0]
    assert "(step 4) is unchanged" in lines[0]
    folder = CheckpointFolder(checkpoints, "tiny")
    assert folder.manifest("latest")["step"] == 4
    state = folder.load_train_state("latest")  # checksums checked: the set is whole
    assert state["progress"]["epoch"] == 2
    weights = torch.load(folder.file("latest", "net_G.pth"), weights_only=True)
    assert weights
