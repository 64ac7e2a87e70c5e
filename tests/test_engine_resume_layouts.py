"""A resumed engine's Adam moments are laid out as their parameters. A checkpoint holds them
contiguous (``host_copy``), and ``Optimizer.load_state_dict`` keeps that layout, so after the
resume of a --channels-last run each 4-d moment was NCHW beside its channels-last weight. On
CUDA the engine's fused Adam refuses that at the first step ("params, grads, exp_avgs, and
exp_avg_sqs must have same dtype, device, and layout"); torch's fused CPU kernel takes it and
pairs the wrong elements; the plain CPU Adam computes right, ~3 % slower a step."""
import pytest
import torch

from fastp2p.train.background_writer import host_copy
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks


@pytest.mark.parametrize("saved_channels_last, resumed_channels_last",
                         [(True, True), (False, True), (True, False)])
def test_resumed_moments_take_their_parameters_layouts(saved_channels_last,
                                                       resumed_channels_last):
    batches = random_batches(2, size=32)
    saved = Pix2PixEngine(*tiny_networks(), channels_last=saved_channels_last)
    for batch in batches:
        saved.step(*batch)
    resumed = Pix2PixEngine(*tiny_networks(seed=3), channels_last=resumed_channels_last)
    resumed.load_state_dict(host_copy(saved.state_dict()))
    four_d = 0
    for optimizer in (resumed.optimizer_G, resumed.optimizer_D):
        for param, state in optimizer.state.items():
            for name in ("exp_avg", "exp_avg_sq"):
                assert state[name].stride() == param.stride(), (name, tuple(param.shape))
            four_d += param.dim() == 4
    assert four_d   # the convolutions' weights, whose layouts differ, were among them
    # the values are the saved ones, element by element
    for ours, theirs in zip(resumed.state_dict()["optimizer_G"]["state"].values(),
                            saved.state_dict()["optimizer_G"]["state"].values()):
        assert torch.equal(ours["exp_avg"], theirs["exp_avg"])
        assert torch.equal(ours["exp_avg_sq"], theirs["exp_avg_sq"])
