"""A run stopped (SIGTERM) right after an epoch's last step saved that step with the epoch's
batches done (``epoch_complete``) and its end (the epoch-end save, ``E_*``) not yet made: a
resume counts that epoch as done."""
import signal

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.saved_options import (COMPUTE_THREADS, MAX_OPTIONS_BYTES, OPTIONS_FILE,
                                         read_options)
from helpers.train_helpers import (signal_after_step, train_argv, write_aligned_dataset,
                                   write_train_state_with_manifest)


def stop_at_the_last_step(data, checkpoints, monkeypatch, *extra):
    """A 2-epoch run of 4 steps each (``extra``: more of its options) stopped after step 8."""
    with monkeypatch.context() as patch:
        signal_after_step(patch, 8, signal.SIGTERM)
        assert main(train_argv(data, checkpoints, *extra)) == 128 + signal.SIGTERM


@pytest.fixture
def stopped_at_the_last_step(tmp_path, monkeypatch):
    """(dataset, checkpoints folder) of ``stop_at_the_last_step``'s run."""
    data = write_aligned_dataset(tmp_path / "data")
    stop_at_the_last_step(data, tmp_path / "ck", monkeypatch)
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


def test_a_resume_to_its_own_end_names_its_changed_options_as_not_applied(
        stopped_at_the_last_step, capsys):
    """It trains no step, so an option given otherwise is not the run's: named as not applied
    (as a resume with nothing to train does), the options file keeping the run's value, and its
    start line says what it does instead of "training"."""
    data, checkpoints = stopped_at_the_last_step
    capsys.readouterr()
    argv = train_argv(data, checkpoints, "--continue_train", "--lr", "0.01")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ("--continue_train: not applied, as nothing is trained (give them again with a later "
            "--n_epochs or --n_epochs_decay): options the run did not use so far "
            f"(its {OPTIONS_FILE}): --lr 0.0002 -> 0.01") in out, out
    assert "trains on with" not in out and "training tiny:" not in out, out
    assert "tiny: saving the end of epoch 2, the last, with no step to train" in out, out
    assert read_options(checkpoints / "tiny" / OPTIONS_FILE)["lr"] == "0.0002"


def test_a_resume_to_its_own_end_ends_the_epoch_as_an_unstopped_run(tmp_path, monkeypatch,
                                                                    capsys):
    """The epoch's end line, lr and schedule state are those of the run's options (an unstopped
    run's), not of the options given otherwise: with --lr_policy plateau, the epoch's loss
    is observed, which --lr_policy linear would skip."""
    data = write_aligned_dataset(tmp_path / "data")
    plateau = ("--lr_policy", "plateau")
    assert main(train_argv(data, tmp_path / "whole", *plateau)) == 0, capsys.readouterr().err
    whole_end = next(line for line in capsys.readouterr().out.splitlines()
                     if line.startswith("epoch 2 done"))
    stop_at_the_last_step(data, tmp_path / "ck", monkeypatch, *plateau)
    capsys.readouterr()
    argv = train_argv(data, tmp_path / "ck", "--continue_train", "--lr_policy", "linear",
                      "--lr", "0.01")
    assert main(argv) == 0, capsys.readouterr().err
    assert whole_end in capsys.readouterr().out.splitlines()
    whole, resumed = (torch.load(folder / "tiny" / "latest_train_state.pth", weights_only=True)
                      for folder in (tmp_path / "whole", tmp_path / "ck"))
    assert resumed["schedule"] == whole["schedule"]
    assert resumed["engine"]["lr"] == whole["engine"]["lr"]


def test_a_resume_ending_the_run_at_the_stopped_epoch_applies_that_end(tmp_path, monkeypatch,
                                                                      capsys):
    """A 3-epoch run stopped right after epoch 2's last step, resumed to end at epoch 2: its
    end is changed (as a stop one step sooner, whose resume trains that step, changes it), so
    the options are applied and recorded (a later resume finds the run finished); its epoch's
    end line keeps the lr that epoch trained at (--n_epochs_decay 2: 2/3 of --lr)."""
    data, checkpoints = write_aligned_dataset(tmp_path / "data"), tmp_path / "ck"
    stop_at_the_last_step(data, checkpoints, monkeypatch, "--n_epochs_decay", "2")
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--continue_train")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "trains on with options the run did not use so far" in out, out
    assert "epoch 2 done: 8 images, lr 0.000133, saving latest_* and 2_*" in out, out
    # what a later resume takes where its command line leaves --n_epochs_decay out
    assert read_options(checkpoints / "tiny" / OPTIONS_FILE)["n_epochs_decay"] == "1"


def test_an_older_state_stopped_at_the_last_step_says_its_epoch_is_done(stopped_at_the_last_step,
                                                                        capsys):
    """A state of a fastp2p before ``epoch_complete`` records the epoch's images, all the
    dataset's where it stopped at the epoch's last step: that epoch is done, as the resume
    that goes on takes it (it trains no step of it)."""
    data, checkpoints = stopped_at_the_last_step
    folder = checkpoints / "tiny"
    state = torch.load(folder / "latest_train_state.pth", weights_only=True)
    del state["progress"]["epoch_complete"], state["progress"]["dataset_pairs"]
    write_train_state_with_manifest(folder, state)
    capsys.readouterr()
    argv = train_argv(data, checkpoints, "--continue_train", "--n_epochs_decay", "0")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{folder} is done up to epoch 2, and this run would end at epoch 1" in out, out


def test_the_end_of_a_run_whose_options_file_predates_an_option_is_made_at_its_default(
        stopped_at_the_last_step, capsys):
    """A whole options file without --lr_step_at (an older fastp2p's) is of a run that trained
    at the default, epoch_end: its epoch 2 at half --lr, not at the lr 0 epoch_start gives."""
    data, checkpoints = stopped_at_the_last_step
    options = checkpoints / "tiny" / OPTIONS_FILE
    options.write_text("".join(line for line in options.read_text().splitlines(True)
                               if not line.startswith("lr_step_at: ")))
    capsys.readouterr()
    argv = train_argv(data, checkpoints, "--continue_train", "--lr_step_at", "epoch_start")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "epoch 2 done: 8 images, lr 0.0001, saving latest_* and 2_*" in out, out


def test_a_resume_stopped_at_an_earlier_epochs_last_step_trains_on(tmp_path, monkeypatch,
                                                                   capsys):
    """Stopped after epoch 1's last step of 2 epochs, a resume has epoch 2 to train: its start
    line is the training one and a changed option is applied, not said to be left unapplied."""
    data = write_aligned_dataset(tmp_path / "data")
    with monkeypatch.context() as patch:
        signal_after_step(patch, 4, signal.SIGTERM)
        assert main(train_argv(data, tmp_path / "ck")) == 128 + signal.SIGTERM
    capsys.readouterr()
    argv = train_argv(data, tmp_path / "ck", "--continue_train", "--lr", "0.01")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "training tiny:" in out and "no step to train" not in out, out
    assert "not applied" not in out, out
    assert read_options(tmp_path / "ck" / "tiny" / OPTIONS_FILE)["lr"] == "0.01"


def test_a_resume_to_its_own_end_says_no_change_of_threads(stopped_at_the_last_step, capsys):
    """A run that computes no step says nothing of the threads it would compute with."""
    data, checkpoints = stopped_at_the_last_step
    options = checkpoints / "tiny" / OPTIONS_FILE
    threads = read_options(options)[COMPUTE_THREADS]
    text = options.read_text()
    options.write_text(text.replace(f"{COMPUTE_THREADS}: {threads}\n",
                                    f"{COMPUTE_THREADS}: {int(threads) + 1}\n"))
    assert read_options(options)[COMPUTE_THREADS] == str(int(threads) + 1)
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--continue_train")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "tiny: saving the end of epoch 2" in out and "torch computes with" not in out, out


def test_a_resume_to_its_own_end_with_an_unreadable_options_file_saves_that_end(
        stopped_at_the_last_step, capsys):
    """An options file too large to read (the resume takes the command line's values, and
    says so) leaves the run's schedule to those values: the end is saved, no traceback."""
    data, checkpoints = stopped_at_the_last_step
    options = checkpoints / "tiny" / OPTIONS_FILE
    options.write_text(options.read_text() + "#" * MAX_OPTIONS_BYTES)
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--continue_train")) == 0, capsys.readouterr().err
    assert "epoch 2 done: 8 images" in capsys.readouterr().out
    assert (checkpoints / "tiny" / "2_net_G.pth").exists()
