"""The start line of `fastp2p train` names the image size --preprocess trains at, and says when
the lr schedule trains the last epoch at lr 0."""
import argparse
from types import SimpleNamespace

import pytest

from fastp2p.cli import main
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.train_command import _image_size_words, _start_line
from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.mark.parametrize("preprocess, words", [
    ("resize_and_crop", "crop 32"), ("crop", "crop 32"), ("scale_width_and_crop", "crop 32"),
    ("scale_width", "width 40"), ("none", "images at their own size")])
def test_start_line_names_the_training_size(preprocess, words):
    args = argparse.Namespace(preprocess=preprocess, load_size=40, crop_size=32)
    assert _image_size_words(args) == words


def _start_line_of(lr_policy, lr_step_at, n_epochs, n_epochs_decay) -> str:
    args = argparse.Namespace(name="run", netG="unet_32", ngf=8, netD="basic", ndf=8,
                              preprocess="crop", load_size=32, crop_size=32, batch_size=1,
                              precision="fp32", channels_last=False, lr_policy=lr_policy,
                              lr_step_at=lr_step_at)
    schedule = LRSchedule(lr_policy, 2e-4, n_epochs=n_epochs, n_epochs_decay=n_epochs_decay,
                          step_at=lr_step_at)
    trainer = SimpleNamespace(schedule=schedule, last_epoch=n_epochs + n_epochs_decay)
    info = SimpleNamespace(world_size=1, device="cpu")
    return _start_line(args, 4, info, False, trainer)


def test_a_last_epoch_at_lr_0_is_said_at_the_start(tmp_path, capsys):
    """--lr_step_at epoch_start with --n_epochs_decay 0 trained a one-epoch run at lr 0, and said
    nothing of it."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt", "--lr_step_at", "epoch_start",
                           "--n_epochs_decay", "0", "--no_html")) == 0
    assert ("\nnote: epoch 1, the last, trains at lr 0 (--lr_policy linear, --lr_step_at "
            "epoch_start): its steps change no weight; --lr_step_at epoch_end trains it at an lr "
            "above 0\n") in capsys.readouterr().out
    assert "epoch 3, the last, trains at lr 0" in _start_line_of("cosine", "epoch_start", 3, 0)


@pytest.mark.parametrize("lr_policy, lr_step_at", [
    ("linear", "epoch_end"), ("cosine", "epoch_end"), ("step", "epoch_start"),
    ("plateau", "epoch_start")])
def test_no_note_where_the_last_epoch_trains(lr_policy, lr_step_at):
    assert "\n" not in _start_line_of(lr_policy, lr_step_at, 1, 0)
