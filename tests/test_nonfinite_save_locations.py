"""Nothing non-finite is saved, wherever the NaN or Inf is (DESIGN §8): a parameter or a buffer
of G or of D, or a tensor of either optimizer's state. The save stops naming exactly that tensor
and the last good checkpoint stays as it was, byte for byte."""
import pytest
import torch

from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.stop_requests import TrainingStopped
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer


def _middle(named):
    """Neither the first nor the last of ``named`` (name, tensor) pairs: a check that looks
    at one end of a list only misses it."""
    named = list(named)
    assert len(named) >= 3
    return named[len(named) // 2]


def _parameter(engine, network):
    name, tensor = _middle(getattr(engine, network).named_parameters())
    return f"{network}.{name}", tensor


def _buffer(engine, network):
    name, tensor = _middle((name, t) for name, t in getattr(engine, network).named_buffers()
                           if t.is_floating_point())
    return f"{network}.{name}", tensor


def _optimizer_state(engine, network, key):
    optimizer = getattr(engine, f"optimizer_{network[-1]}")
    name, param = _middle(getattr(engine, network).named_parameters())
    return f"optimizer_{network[-1]} {key} of {name}", optimizer.state[param][key]


LOCATIONS = {
    "netG-parameter": lambda engine: _parameter(engine, "netG"),
    "netG-buffer": lambda engine: _buffer(engine, "netG"),
    "netD-parameter": lambda engine: _parameter(engine, "netD"),
    "netD-buffer": lambda engine: _buffer(engine, "netD"),
    "optimizer_G-state": lambda engine: _optimizer_state(engine, "netG", "exp_avg"),
    "optimizer_D-state": lambda engine: _optimizer_state(engine, "netD", "exp_avg_sq"),
}


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.path.iterdir())}


@pytest.mark.parametrize("location", LOCATIONS)
def test_inf_anywhere_in_the_training_state_stops_the_save_and_names_the_tensor(tmp_path,
                                                                               location):
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    args = type("Args", (), {"n_epochs": 1, "n_epochs_decay": 0, "epoch_count": 1,
                             "precision": "fp32"})()
    trainer = Trainer(args, engine, netG, netD,
                      LRSchedule("linear", 2e-4, n_epochs=1, n_epochs_decay=0),
                      CheckpointFolder(tmp_path, "run"))
    first, second = random_batches(2, batch_size=1)
    engine.step(*first)
    trainer.save(["latest"])
    trainer.writer.wait()
    good = _files(trainer.checkpoints)
    assert set(good) == {f"latest_{suffix}" for suffix in
                         ("checkpoint.json", "net_G.pth", "net_D.pth", "train_state.pth")}
    engine.step(*second)
    assert engine.first_nonfinite_tensor() is None
    name, tensor = LOCATIONS[location](engine)
    with torch.no_grad():
        tensor.view(-1)[tensor.numel() // 2] = float("inf")
    assert engine.first_nonfinite_tensor() == name
    with pytest.raises(TrainingStopped) as stopped:
        trainer.save(["latest"])
    trainer.writer.close()
    assert str(stopped.value).startswith(f"{name} holds NaN or Inf at step 2 (epoch 1)")
    assert "latest_* (step 1) is unchanged" in str(stopped.value)
    assert _files(trainer.checkpoints) == good


# (the step after which a weight turns Inf, --save_latest_freq, the epoch the stop names) at
# 2 steps an epoch: step 2 is epoch 1's last, found at its epoch-end save, when the progress
# has moved on to epoch 2 (which the stop named); step 3 is epoch 2's first, found at a
# mid-epoch save
POISONED_STEPS = {"epoch-end": (2, 1000, 1), "mid-epoch": (3, 2, 2)}


@pytest.mark.parametrize("case", POISONED_STEPS)
def test_the_stop_names_the_epoch_of_the_bad_step(tmp_path, monkeypatch, case):
    step, save_latest_freq, epoch = POISONED_STEPS[case]
    original = Pix2PixEngine.step

    def step_then_poison(self, real_A, real_B):
        original(self, real_A, real_B)
        if self.steps == step:
            name, tensor = _buffer(self, "netG")
            with torch.no_grad():
                tensor.view(-1)[0] = float("inf")
    monkeypatch.setattr(Pix2PixEngine, "step", step_then_poison)
    netG, netD = tiny_networks()
    trainer, lines = stand_in_trainer(tmp_path, netG, netD, save_latest_freq=save_latest_freq)
    assert trainer.fit(ListLoader(random_batches(2, batch_size=2))) == 1
    assert any(f"holds NaN or Inf at step {step} (epoch {epoch}); training stopped" in line
               for line in lines), lines
