"""A run stopped (SIGTERM) right after an epoch's last step saved that step with the epoch's
batches done (``epoch_complete``) and its end (the epoch-end save, ``E_*``) not yet made: a
resume counts that epoch as done."""
import signal

import pytest

from fastp2p.cli import main
from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset


@pytest.fixture
def stopped_at_the_last_step(tmp_path, monkeypatch):
    """(dataset, checkpoints folder) of a 2-epoch run of 4 steps each stopped after step 8."""
    data = write_aligned_dataset(tmp_path / "data")
    with monkeypatch.context() as patch:
        signal_after_step(patch, 8, signal.SIGTERM)
        assert main(train_argv(data, tmp_path / "ck")) == 128 + signal.SIGTERM
    return data, tmp_path / "ck"


def test_a_resume_ending_before_it_says_the_stopped_epoch_is_done(stopped_at_the_last_step,
                                                                  capsys):
    """It said "done up to epoch 1": epoch 2's steps are all trained."""
    data, checkpoints = stopped_at_the_last_step
    capsys.readouterr()
    argv = train_argv(data, checkpoints, "--continue_train", "--n_epochs_decay", "0")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert (f"{checkpoints / 'tiny'} is done up to epoch 2, and this run would end at epoch 1 "
            "(--n_epochs 1 + --n_epochs_decay 0): nothing to train") in out, out
    assert not (checkpoints / "tiny" / "2_net_G.pth").exists()


def test_a_resume_to_its_own_end_saves_that_end_and_trains_no_step(stopped_at_the_last_step,
                                                                   capsys):
    """Its run's end (the last epoch's set, 2_*, that an unstopped run leaves) is saved, and
    the run is then finished: the next resume has nothing to train."""
    data, checkpoints = stopped_at_the_last_step
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--continue_train")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "epoch 2 done: 8 images" in out and "saving latest_* and 2_*" in out, out
    assert (checkpoints / "tiny" / "2_net_G.pth").exists()
    assert main(train_argv(data, checkpoints, "--continue_train")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{checkpoints / 'tiny'} is done up to epoch 2, and this run would end at epoch 2" \
        in out, out
