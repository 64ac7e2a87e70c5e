"""tests/helpers/training_moved.py, the check the GPU engine tests use to tell a trained network
from an untouched one, on CPU engines: it passes for two runs that train, and fails for a
network that skipped its steps."""
import copy

import pytest

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks
from helpers.training_moved import assert_moved_like_the_peer, snapshot


def _trained(netG, netD, batches, lr=2e-4):
    engine = Pix2PixEngine(netG, netD, lr=lr)
    for batch in batches:
        engine.step(*batch)
    return netG, netD


def test_two_trained_runs_pass_and_an_untouched_one_fails():
    netG, netD = tiny_networks()
    starts = snapshot(netG, netD)
    copies = copy.deepcopy((netG, netD))
    peers = _trained(netG, netD, random_batches(4))
    assert_moved_like_the_peer(_trained(*copies, random_batches(4, seed=2)), peers, starts)
    with pytest.raises(AssertionError, match="network 0 moved 0 from its start"):
        assert_moved_like_the_peer(tiny_networks(), peers, starts)
    with pytest.raises(AssertionError, match="moved"):     # trained with lr 0: not at all
        assert_moved_like_the_peer(_trained(*tiny_networks(), random_batches(4), lr=0.0),
                                   peers, starts)
