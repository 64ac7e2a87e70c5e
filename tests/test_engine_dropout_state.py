"""The engine state's dropout streams, in one process: states of older fastp2p versions saved
under torchrun (the streams under the DDP wrapper's "netG.module" names) still load, and a
stream that matches no module is a one-line error, before anything of the engine is loaded."""
import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks


def _engine():
    netG, netD = tiny_networks(num_downs=6, use_dropout=True)  # 6 levels: one dropout layer
    return Pix2PixEngine(netG, netD), netG


def test_a_state_saved_under_torchrun_by_an_older_version_loads():
    engine, netG = _engine()
    for real_A, real_B in random_batches(2, size=64):
        engine.step(real_A, real_B)
    state = engine.state_dict()
    assert list(state["dropout_rng"]) == ["netG"]
    seed, offset = netG.dropout_rng.tolist()
    assert offset > 0
    state["dropout_rng"] = {"netG.module": state["dropout_rng"]["netG"]}  # as rank 0 saved it
    resumed, resumed_G = _engine()
    resumed.load_state_dict(state)
    assert resumed_G.dropout_rng.tolist() == [seed, offset]


def test_a_stream_of_no_module_is_refused_in_one_line():
    engine, _ = _engine()
    state = engine.state_dict()
    state["dropout_rng"] = {"netG.model.7": torch.tensor([0, 5])}
    with pytest.raises(ValueError, match="dropout stream 'netG.model.7' belongs to no module"):
        _engine()[0].load_state_dict(state)


def _plain(value):
    """``value`` (a state dict) with every tensor as (dtype, its values): comparable by ==."""
    if isinstance(value, torch.Tensor):
        return value.dtype, value.tolist()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def test_a_stream_of_no_module_is_refused_before_anything_is_loaded():
    """The stream's owner was looked up after the optimizers, the lr, the counters and the
    process's RNG had been loaded: a refused state left the engine half resumed."""
    trained, _ = _engine()
    for real_A, real_B in random_batches(2, size=64):
        trained.step(real_A, real_B)
    trained.set_lr(1e-3)
    state = trained.state_dict()
    state["dropout_rng"]["netG.model.7"] = torch.tensor([0, 5])
    engine, _ = _engine()
    torch.manual_seed(11)   # the process's RNG, which the state's "rng" would replace
    before = _plain(engine.state_dict())   # its "rng" is the process's RNG state
    with pytest.raises(ValueError, match="dropout stream 'netG.model.7' belongs to no module"):
        engine.load_state_dict(state)
    assert _plain(engine.state_dict()) == before
