"""--use_wandb and --tensorboard: they get the losses and samples, and a missing package is a
one-line error before anything runs. Fake modules prove the calls everywhere; the real packages
are exercised too where they are installed (the [trackers] extra; skipped otherwise)."""
import sys
import types

import pytest

from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("trackers") / "data")


def _fake_wandb():
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        def log(self, values, step=None):
            calls["log"].append((step, values))

        def finish(self):
            calls["finish"] += 1

    def init(**kwargs):
        calls["init"].append(kwargs)
        return Run()

    module = types.ModuleType("wandb")
    module.init = init
    module.Image = lambda array, caption=None: ("image", array.shape, caption)
    return module, calls


def test_use_wandb_logs_losses_and_samples(data, tmp_path, monkeypatch):
    module, calls = _fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    argv = train_argv(data, tmp_path / "ckpt", "--use_wandb", "--wandb_project_name", "proj")
    assert main(argv) == 0
    (init,) = calls["init"]
    assert init["project"] == "proj" and init["name"] == "tiny" and init["job_type"] == "train"
    assert init["config"]["lambda_L1"] == 100.0 and init["dir"] == str(tmp_path / "ckpt/tiny")
    loss_steps = [step for step, values in calls["log"] if "G_L1" in values]
    assert loss_steps == list(range(1, 9))  # --log-every 1 over 2 epochs of 4 pairs
    assert all({"G_GAN", "D_real", "D_fake", "lr", "images_per_s"} <= set(values)
               for step, values in calls["log"] if "G_L1" in values)
    samples = [(step, values) for step, values in calls["log"] if "fake_B" in values]
    assert [step for step, _ in samples] == [3, 6, 8]  # --display_freq 3, and the last step
    assert samples[0][1]["fake_B"] == ("image", (32, 32, 3), "fake_B")
    assert calls["finish"] == 1


def test_use_wandb_in_test_logs_each_translated_image(data, tmp_path, monkeypatch):
    assert main(train_argv(data, tmp_path / "ckpt")) == 0
    module, calls = _fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
            "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
            "--crop_size", "32", "--results_dir", str(tmp_path / "results"), "--num_test", "2",
            "--use_wandb"]
    assert main(argv) == 0
    assert calls["init"][0]["job_type"] == "test"
    assert [step for step, _ in calls["log"]] == [0, 1]
    assert set(calls["log"][0][1]) == {"real_A", "fake_B", "real_B"}


@pytest.mark.parametrize("flag,module,message", [
    ("--use_wandb", "wandb",
     "fastp2p train: error: --use_wandb needs the wandb package: pip install wandb"),
    ("--tensorboard", "torch.utils.tensorboard",
     "fastp2p train: error: --tensorboard needs the tensorboard package: pip install tensorboard"),
])
def test_missing_tracker_package_is_a_clear_error(data, tmp_path, monkeypatch, capsys, flag,
                                                  module, message):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    assert main(train_argv(data, tmp_path / "ckpt", flag)) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "ckpt").exists()  # stopped before anything ran


def test_tensorboard_writes_losses_and_samples(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(train_argv(data, tmp_path / "ckpt", "--tensorboard")) == 0
    events = EventAccumulator(str(tmp_path / "ckpt/tiny/tensorboard/train"),
                              size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"G_GAN", "G_L1", "D_real", "D_fake", "lr"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("G_L1")] == list(range(1, 9))
    assert set(events.Tags()["images"]) == {"real_A", "fake_B", "real_B"}
    assert [event.step for event in events.Images("fake_B")] == [3, 6, 8]  # and the last step


def test_real_wandb_offline_run(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(train_argv(data, tmp_path / "ckpt", "--use_wandb")) == 0
    runs = list((tmp_path / "ckpt/tiny/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
