"""What a resumed run keeps of where it stopped: the plateau metric it observes is the one of the
uninterrupted run, and the position in the epoch is kept in images, so a resume at another
--batch_size or world size takes each image once (or is refused off a batch boundary), a
finished drop_last epoch resumes at any batch size, and an older saved state resumes as before."""
import signal
from types import SimpleNamespace

import pytest
import torch

from fastp2p.cli import main
from fastp2p.data import create_dataloader, create_dataset
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import ResumeError, Trainer
from helpers.data_helpers import data_args
from helpers.train_helpers import (folder_files, one_line, signal_after_step, tiny_networks,
                                   train_argv, write_aligned_dataset)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


def _record_observed(monkeypatch) -> list:
    observed = []
    original = LRSchedule.observe

    def observe(self, metric):
        observed.append(metric)
        return original(self, metric)
    monkeypatch.setattr(LRSchedule, "observe", observe)
    return observed


@pytest.mark.parametrize("log_every", ["1", "3"])
@pytest.mark.parametrize("stop_step", [4, 6], ids=["last_batch_of_epoch_1", "mid_epoch_2"])
def test_interrupted_plateau_run_observes_the_uninterrupted_metrics(data, tmp_path, monkeypatch,
                                                                    stop_step, log_every):
    argv = ["--lr_policy", "plateau", "--log-every", log_every]
    with monkeypatch.context() as patch:
        straight = _record_observed(patch)
        assert main(train_argv(data, tmp_path / "straight", *argv)) == 0
    with monkeypatch.context() as patch:
        observed = _record_observed(patch)
        signal_after_step(patch, stop_step)
        assert main(train_argv(data, tmp_path / "resumed", *argv)) == 128 + signal.SIGINT
        assert main(train_argv(data, tmp_path / "resumed", *argv, "--continue_train")) == 0
    assert len(straight) == 2 and all(metric == metric for metric in straight)  # not NaN
    assert observed == straight


def _record_images(monkeypatch) -> list:
    """Every real_A image the engine steps on, one tensor per image."""
    seen = []
    original = Pix2PixEngine.step

    def step(self, real_A, real_B):
        seen.extend(real_A.clone())
        original(self, real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", step)
    return seen


@pytest.fixture(scope="module")
def six_pairs(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("six"), pairs=6, phases=("train",))


def test_resume_with_another_batch_size_takes_each_image_once(six_pairs, tmp_path, monkeypatch):
    one_epoch = ["--n_epochs_decay", "0"]
    with monkeypatch.context() as patch:
        straight = _record_images(patch)
        assert main(train_argv(six_pairs, tmp_path / "straight", *one_epoch)) == 0
    with monkeypatch.context() as patch:
        seen = _record_images(patch)
        signal_after_step(patch, 1)   # one batch of 2: images 0 and 1 done
        assert main(train_argv(six_pairs, tmp_path / "resumed", *one_epoch,
                               "--batch_size", "2")) == 128 + signal.SIGINT
        assert main(train_argv(six_pairs, tmp_path / "resumed", *one_epoch,
                               "--continue_train", "--batch_size", "1")) == 0
    assert len(straight) == 6
    assert len(seen) == 6 and all(torch.equal(a, b) for a, b in zip(seen, straight))


def test_resume_at_an_image_off_the_new_batch_boundary_is_refused(six_pairs, tmp_path,
                                                                  monkeypatch, capsys):
    with monkeypatch.context() as patch:
        signal_after_step(patch, 1)
        assert main(train_argv(six_pairs, tmp_path, "--batch_size", "2")) == 128 + signal.SIGINT
    capsys.readouterr()
    before = folder_files(tmp_path / "tiny", mtimes=True)
    assert main(train_argv(six_pairs, tmp_path, "--continue_train", "--batch_size", "3")) == 2
    line = one_line(capsys.readouterr().err)
    assert "--batch_size 2 x 1" in line and "--batch_size 3 x 1" in line and "image 2" in line
    # it had rewritten train_opt.txt with --batch_size 3, and the loss log
    assert folder_files(tmp_path / "tiny", mtimes=True) == before


def _trainer(tmp_path, batch_size, world_size):
    netG, netD = tiny_networks()
    args = SimpleNamespace(n_epochs=2, n_epochs_decay=0, epoch_count=1, precision="fp32",
                           batch_size=batch_size)
    schedule = LRSchedule("plateau", 2e-4, n_epochs=2, n_epochs_decay=0)
    return Trainer(args, Pix2PixEngine(netG, netD), netG, netD, schedule,
                   CheckpointFolder(tmp_path, "run"), world_size=world_size)


class _Loader:
    """What resume reads of a loader: its dataset's length and its number of batches."""

    def __init__(self, pairs, batches):
        self.dataset, self.batches = range(pairs), batches

    def __len__(self):
        return self.batches


def _saved_state(tmp_path, **progress):
    state = _trainer(tmp_path, 1, 1).train_state()
    state["progress"] = progress
    return state


def test_resume_converts_the_image_position_to_another_world_size(tmp_path):
    saved = dict(epoch=2, epoch_batches=4, images=12, epoch_images=4, batch_size=1,
                 world_size=1, epoch_loss_sum=3.5, epoch_loss_reads=2)
    trainer = _trainer(tmp_path, batch_size=1, world_size=2)
    trainer.resume(_saved_state(tmp_path, **saved), _Loader(pairs=8, batches=4))
    assert (trainer.progress.epoch_batches, trainer.progress.epoch_loss_sum,
            trainer.progress.epoch_loss_reads) == (2, 3.5, 2)
    odd = _trainer(tmp_path, batch_size=3, world_size=2)
    with pytest.raises(ResumeError, match=r"--batch_size 1 x 1 .* --batch_size 3 x 2"):
        odd.resume(_saved_state(tmp_path, **saved), _Loader(pairs=8, batches=2))
    done = _trainer(tmp_path, batch_size=3, world_size=2)   # all of the epoch's images done
    done.resume(_saved_state(tmp_path, **{**saved, "epoch_images": 8}), _Loader(8, 2))
    assert done.progress.epoch_batches == 2


def test_a_state_of_an_older_fastp2p_resumes_as_before(tmp_path):
    trainer = _trainer(tmp_path, batch_size=2, world_size=1)
    trainer.resume(_saved_state(tmp_path, epoch=1, epoch_batches=3, images=6),
                   _Loader(pairs=8, batches=4))
    progress = trainer.progress
    assert (progress.epoch_batches, progress.epoch_images, progress.epoch_loss_reads) == (3, 6, 0)


def test_a_finished_drop_last_epoch_resumes_with_another_batch_size(tmp_path):
    # CUDA graphs drop the last partial batch: 10 pairs in batches of 4 end the epoch at image
    # 8, which is not a batch boundary of 3 but needs none, as no batch of it is left to run
    saved = dict(epoch=1, epoch_batches=2, images=8, epoch_images=8, batch_size=4,
                 world_size=1, epoch_loss_sum=1.0, epoch_loss_reads=2, epoch_complete=True)
    trainer = _trainer(tmp_path, batch_size=3, world_size=1)
    trainer.resume(_saved_state(tmp_path, **saved), _Loader(pairs=10, batches=3))
    assert trainer.progress.epoch_batches == 3
    unfinished = _trainer(tmp_path, batch_size=3, world_size=1)   # still refused mid-epoch
    with pytest.raises(ResumeError, match="8 is not a multiple of 3"):
        unfinished.resume(_saved_state(tmp_path, **{**saved, "epoch_complete": False}),
                          _Loader(pairs=10, batches=3))


@pytest.mark.parametrize("stop_step, complete", [(3, False), (4, True)],
                         ids=["before_the_last_batch", "after_the_last_batch"])
def test_a_saved_state_records_whether_its_epoch_was_complete(data, tmp_path, monkeypatch,
                                                              stop_step, complete):
    signal_after_step(monkeypatch, stop_step)   # 4 pairs, batch 1: epoch 1 is steps 1..4
    assert main(train_argv(data, tmp_path)) == 128 + signal.SIGINT
    state = torch.load(tmp_path / "tiny" / "latest_train_state.pth", weights_only=True)
    assert (state["progress"]["epoch_batches"], state["progress"]["epoch_complete"]) == \
        (stop_step, complete)


def test_an_older_state_resumed_without_a_loader_counts_its_images(tmp_path):
    trainer = _trainer(tmp_path, batch_size=2, world_size=3)
    trainer.resume(_saved_state(tmp_path, epoch=1, epoch_batches=1, images=6))
    assert trainer.progress.epoch_images == 6
    trainer.progress.epoch_images += 6   # what the loop does after its next batch


def test_ranks_together_take_the_same_first_images_at_any_world_size(six_pairs):
    dataset = create_dataset(data_args(six_pairs, "--load_size", "32", "--crop_size", "32"),
                             "train")

    def first_images(batch_size, world_size, batches):
        paths = set()
        for rank in range(world_size):
            loader = create_dataloader(dataset, batch_size, shuffle=True, num_workers=0, seed=7,
                                       rank=rank, world_size=world_size)
            loader.set_epoch(3)
            for index, batch in enumerate(loader):
                if index == batches:
                    break
                paths.update(batch["A_paths"])
        return paths
    assert first_images(1, 2, 2) == first_images(4, 1, 1) == first_images(2, 1, 2)
    assert len(first_images(4, 1, 1)) == 4


def test_a_crafted_state_is_refused_by_resume_itself_before_anything_changes(tmp_path):
    """A program resuming through Trainer.resume (not the train command, which checks the file
    first) gets a ValueError, not a TypeError from Progress(**...), and nothing is applied."""
    trainer = _trainer(tmp_path, batch_size=1, world_size=1)
    state = trainer.train_state()
    state["progress"]["surprise"] = 1
    progress, rng = trainer.progress, torch.get_rng_state()
    with pytest.raises(ValueError, match=r"not a fastp2p training state \(.*surprise"):
        trainer.resume(state)
    assert trainer.progress is progress and torch.equal(torch.get_rng_state(), rng)


def test_a_state_the_engine_refuses_leaves_the_lr_schedule_as_it_was(tmp_path):
    """The schedule is loaded only after the engine, which can still refuse the state (here an
    Adam moment of another shape): a library caller keeps its trainer's schedule."""
    saved = _trainer(tmp_path, batch_size=1, world_size=1)
    saved.schedule.observe(1.0)
    state = saved.train_state()
    state["progress"]["epoch"] = 2
    state["schedule"]["epoch_count"] = 2
    moments = next(iter(state["engine"]["optimizer_G"]["state"].values()), None)
    if moments is None:  # no step taken: give parameter 0 moments of the wrong shape
        state["engine"]["optimizer_G"]["state"][0] = moments = {
            "step": torch.tensor(1.0), "exp_avg": torch.zeros(1), "exp_avg_sq": torch.zeros(1)}
    else:
        moments["exp_avg"] = torch.zeros(1)
    trainer = _trainer(tmp_path / "other", batch_size=1, world_size=1)
    before = trainer.schedule.state_dict()
    with pytest.raises(ValueError):
        trainer.resume(state)
    assert trainer.schedule.state_dict() == before

