"""The training/test CLI defects a review found, each pinned: the plateau metric and the image
position survive a resume (a finished drop_last epoch at any batch size too), a suffixed --name
stays inside --checkpoints_dir, a fresh run does not restart another run's folder and
--overwrite leaves only the new run's checkpoint sets, a run with no epoch to train is an option
error, `fastp2p test` names outputs uniquely, and the one-line messages say what is wrong."""
import argparse
import json
import os
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
from fastp2p.train.translate_command import _output_name
from helpers.data_helpers import data_args
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset


def _interrupt_at(monkeypatch, step):
    """SIGINT to this process right after engine step ``step`` (the trainer saves and exits)."""
    original = Pix2PixEngine.step

    def step_then_signal(self, real_A, real_B):
        original(self, real_A, real_B)
        if self.steps == step:
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(Pix2PixEngine, "step", step_then_signal)


def _record_observed(monkeypatch) -> list:
    observed = []
    original = LRSchedule.observe

    def observe(self, metric):
        observed.append(metric)
        return original(self, metric)
    monkeypatch.setattr(LRSchedule, "observe", observe)
    return observed


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


# ---- 1. the plateau metric survives a resume -----------------------------------------------

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
        _interrupt_at(patch, stop_step)
        assert main(train_argv(data, tmp_path / "resumed", *argv)) == 128 + signal.SIGINT
        assert main(train_argv(data, tmp_path / "resumed", *argv, "--continue_train")) == 0
    assert len(straight) == 2 and all(metric == metric for metric in straight)  # not NaN
    assert observed == straight


# ---- 2. the position in the epoch is kept in images ----------------------------------------

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
        _interrupt_at(patch, 1)   # one batch of 2: images 0 and 1 done
        assert main(train_argv(six_pairs, tmp_path / "resumed", *one_epoch,
                               "--batch_size", "2")) == 128 + signal.SIGINT
        assert main(train_argv(six_pairs, tmp_path / "resumed", *one_epoch,
                               "--continue_train", "--batch_size", "1")) == 0
    assert len(straight) == 6
    assert len(seen) == 6 and all(torch.equal(a, b) for a, b in zip(seen, straight))


def test_resume_at_an_image_off_the_new_batch_boundary_is_refused(six_pairs, tmp_path,
                                                                  monkeypatch, capsys):
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 1)
        assert main(train_argv(six_pairs, tmp_path, "--batch_size", "2")) == 128 + signal.SIGINT
    capsys.readouterr()
    assert main(train_argv(six_pairs, tmp_path, "--continue_train", "--batch_size", "3")) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--batch_size 2 x 1" in line and "--batch_size 3 x 1" in line and "image 2" in line


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
    _interrupt_at(monkeypatch, stop_step)   # 4 pairs, batch 1: epoch 1 is steps 1..4
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


# ---- 3. --suffix cannot lead --name out of --checkpoints_dir --------------------------------

@pytest.mark.parametrize("command", ["train", "test"])
def test_a_suffix_with_a_path_is_refused(data, tmp_path, capsys, command):
    checkpoints = tmp_path / "deep" / "ckpt"
    argv = train_argv(data, checkpoints, "--suffix", "/../../escaped")
    if command == "test":
        argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
                "--name", "tiny", "--suffix", "/../../escaped", "--results_dir",
                str(tmp_path / "deep" / "results")]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--suffix" in line and "path separators" in line
    assert not (tmp_path / "deep").exists() and not (tmp_path / "escaped").exists()


def test_train_phase_with_a_path_is_refused_by_the_parser(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(train_argv(data, tmp_path / "ckpt", "--phase", "../train"))
    assert stop.value.code == 2 and "--phase" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


# ---- 4. a fresh run does not restart another run's folder -----------------------------------

def test_a_fresh_run_in_a_run_folder_needs_overwrite(data, tmp_path, capsys):
    one_epoch = ["--n_epochs_decay", "0"]
    assert main(train_argv(data, tmp_path, *one_epoch)) == 0
    run = tmp_path / "tiny"
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, *one_epoch)) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(hint in line for hint in ("--continue_train", "--name", "--overwrite", str(run)))
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before
    # a finished run resumed trains nothing and says where its files are (documented)
    assert main(train_argv(data, tmp_path, *one_epoch, "--continue_train")) == 0
    assert main(train_argv(data, tmp_path, *one_epoch, "--overwrite", "--seed", "5")) == 0
    assert (run / "latest_net_G.pth").read_bytes() != before["latest_net_G.pth"]
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--continue_train", "--overwrite")) == 2
    assert "keep one of them" in _one_line(capsys.readouterr().err)


def test_overwrite_removes_the_previous_runs_sets_logs_and_samples_only(data, tmp_path, capsys):
    by_iter = ["--save_by_iter", "--save_latest_freq", "2"]
    assert main(train_argv(data, tmp_path, *by_iter)) == 0   # 2 epochs: 2, latest, iter_2..8
    run = tmp_path / "tiny"
    old = {path.name for path in run.iterdir()}
    assert {"2_net_G.pth", "iter_8_checkpoint.json", "latest_train_state.pth"} <= old
    (run / "notes.txt").write_text("mine")
    (run / "web" / "images" / "mine.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--overwrite", "--n_epochs_decay", "0")) == 0
    sets = {f"{label}_{suffix}" for label in ("1", "latest")
            for suffix in ("checkpoint.json", "net_G.pth", "net_D.pth", "train_state.pth")}
    assert {path.name for path in run.iterdir()} == sets | {
        "notes.txt", "train_opt.txt", "loss_log.csv", "web"}
    assert (run / "notes.txt").read_text() == "mine"
    samples = {path.name for path in (run / "web" / "images").iterdir()} - {"mine.png"}
    assert samples and all(name.startswith("epoch001_") for name in samples)
    assert (run / "web" / "images" / "mine.png").exists()
    steps = (run / "loss_log.csv").read_text().splitlines()[1:]
    assert len(steps) == 4   # the new run's 4 steps, none of the previous run's 8
    line = [line for line in capsys.readouterr().out.splitlines() if "--overwrite" in line]
    assert len(line) == 1   # 2, iter_2, iter_4, iter_6, iter_8, latest
    assert "previous run's 6 checkpoint set(s)" in line[0] and str(run) in line[0]


def test_the_sets_overwrite_removes_are_whole_sets_and_nothing_else(tmp_path):
    folder = CheckpointFolder(tmp_path, "run")
    netG, netD = tiny_networks()
    folder.save(["latest", "3"], netG, netD, {"progress": {}})
    (folder.path / "5_net_G.pth").write_bytes(b"the reference's, no manifest")
    (folder.path / "iter_40_checkpoint.json").write_text("{damaged")
    (folder.path / "iter_40_net_D.pth").write_bytes(b"d")
    staged = json.loads((folder.path / "3_checkpoint.json").read_text())["files"]["3_net_G.pth"]
    (folder.path / staged["staged"]).write_bytes(b"a committed save's unrenamed file")
    mine = ["notes.txt", "latest_notes.txt", "best_net_G.pth", "3_net_G.pth.bak", "x_3_net_G.pth"]
    for name in mine:
        (folder.path / name).write_text("mine")
    sets = folder.saved_sets()
    assert sorted(sets) == ["3", "5", "iter_40", "latest"]
    assert sets["3"][0].name == "3_checkpoint.json"   # the manifest goes first
    assert staged["staged"] in {path.name for path in sets["3"]}
    folder.remove_sets(sets)
    assert sorted(path.name for path in folder.path.iterdir()) == sorted(mine)


# ---- 5. no epoch to train is an option error -------------------------------------------------

@pytest.mark.parametrize("extra", [["--n_epochs", "0", "--n_epochs_decay", "0"],
                                   ["--epoch_count", "3"]], ids=["zero_epochs", "past_the_end"])
def test_a_run_with_no_epoch_to_train_exits_2(data, tmp_path, capsys, extra):
    assert main(train_argv(data, tmp_path / "ckpt", *extra)) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(option in line for option in ("--epoch_count", "--n_epochs", "--n_epochs_decay"))
    assert not (tmp_path / "ckpt").exists()


# ---- 6. `fastp2p test` names each image's outputs uniquely ---------------------------------

def test_same_file_names_in_subfolders_get_their_own_outputs(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    for index, folder in enumerate(("test", "test/a", "test/b")):
        write_aligned_dataset(tmp_path / "tmp", pairs=1, phases=("x",), seed=index)
        (data / folder).mkdir(parents=True)
        (tmp_path / "tmp/x/000.png").rename(data / folder / "000.png")
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")) == 0
    results = tmp_path / "results"
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0", "--results_dir", str(results),
                 "--eval"]) == 0
    images = results / "tiny" / "test_latest" / "images"
    names = ("000", "a_000", "b_000")   # the first keeps its stem, as before
    assert sorted(path.name for path in images.iterdir()) == sorted(
        f"{name}_{label}.png" for name in names for label in ("real_A", "fake_B", "real_B"))
    real = [(images / f"{name}_real_A.png").read_bytes() for name in names]
    assert len(set(real)) == 3
    page = (results / "tiny" / "test_latest" / "index.html").read_text()
    assert all(page.count(f"images/{name}_real_A.png") == 1 for name in names)


def test_output_names_stay_unique_in_every_collision(tmp_path):
    phase = tmp_path / "test"
    taken = set()
    paths = [phase / "1.png", phase / "1.jpg", phase / "a" / "1.png", phase / "a_1.png",
             tmp_path / "elsewhere" / "1.png"]
    assert [_output_name(path, phase, taken) for path in paths] == \
        ["1", "1-2", "a_1", "a_1-2", "elsewhere_1"]
    assert _output_name(phase / "2.png", None, taken) == "2"


# ---- 7. one-line messages that say what is wrong --------------------------------------------

def test_a_dataroot_that_is_a_file_is_named_as_a_file(tmp_path, capsys):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    assert main(train_argv(a_file, tmp_path / "ckpt")) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(a_file) in line and "is a file" in line and "not found" not in line


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "lots"])
def test_max_dataset_size_below_one_is_an_option_error(data, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(train_argv(data, tmp_path / "ckpt", "--max_dataset_size", value))
    line = _one_line(capsys.readouterr().err.splitlines()[-1])
    assert stop.value.code == 2 and "--max_dataset_size" in line and repr(value) in line


def test_max_dataset_size_takes_counts_and_inf():
    parser = argparse.ArgumentParser()
    from fastp2p.data import add_data_arguments
    add_data_arguments(parser)
    assert parser.parse_args(["--max_dataset_size", "3"]).max_dataset_size == 3
    assert parser.parse_args(["--max_dataset_size", "inf"]).max_dataset_size == float("inf")


def test_test_with_a_damaged_checkpoint_says_which_file_and_how_to_get_a_good_one(
        data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")) == 0
    weights = tmp_path / "ckpt" / "tiny" / "latest_net_G.pth"
    weights.write_bytes(weights.read_bytes()[:-10])
    capsys.readouterr()
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0",
                 "--results_dir", str(tmp_path / "results")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(weights) in line and "another saved --epoch" in line
    assert "start again without --continue_train" not in line
