"""A resumed engine's Adam runs as the engine built it, whatever device saved the state.
``Optimizer.load_state_dict`` takes each group's settings from the state it loads, and
--device is not inherited: a CPU run's state resumed on CUDA gave the engine's Adam
capturable=False and fused=None (its step counts left on the CPU), so capturing the step in a
CUDA graph raised ("Attempting CUDA graph capture of step() for an instance of Adam but
param_groups' capturable is False"); a CUDA run's state resumed on a CPU ran torch's fused
capturable Adam there instead of the engine's plain one. No GPU here: the CUDA engine's
optimizers are emulated by their settings (fused, capturable), which the CPU's Adam runs."""
from fastp2p.train.background_writer import host_copy
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks

CUDA_ADAM = {"fused": True, "capturable": True, "foreach": None, "differentiable": False}
DEVICE_SETTINGS = tuple(CUDA_ADAM)


def _optimizers(engine):
    return engine.optimizer_G, engine.optimizer_D


def _as_on_cuda(engine):
    """``engine`` with its Adam's settings those the engine builds on CUDA."""
    for optimizer in _optimizers(engine):
        for group in optimizer.param_groups:
            group.update(CUDA_ADAM)
    return engine


def _settings(engine):
    return [{key: group[key] for key in DEVICE_SETTINGS}
            for optimizer in _optimizers(engine) for group in optimizer.param_groups]


def _saved_state(engine_on_cuda: bool):
    saved = Pix2PixEngine(*tiny_networks())
    if engine_on_cuda:
        _as_on_cuda(saved)
    for batch in random_batches(2, size=32):
        saved.step(*batch)
    return host_copy(saved.state_dict())


def test_a_cpu_state_resumed_on_cuda_keeps_the_cuda_engines_adam():
    resumed = _as_on_cuda(Pix2PixEngine(*tiny_networks(seed=3)))
    built = _settings(resumed)
    resumed.load_state_dict(_saved_state(engine_on_cuda=False))
    assert _settings(resumed) == built


def test_a_cuda_state_resumed_on_a_cpu_keeps_the_plain_adam():
    resumed = Pix2PixEngine(*tiny_networks(seed=3))
    built = _settings(resumed)
    resumed.load_state_dict(_saved_state(engine_on_cuda=True))
    assert _settings(resumed) == built
    resumed.step(*random_batches(1, size=32)[0])
