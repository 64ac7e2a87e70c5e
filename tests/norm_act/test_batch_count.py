"""BatchNorm's num_batches_tracked in the fused networks: the norm op counts the batch (the Triton
kernel that updates the running statistics; the C++ and reference backends with add_), so after
N training forwards the checkpoint has the reference module's keys and values; eval forwards
count nothing; momentum=None (cumulative average, which reads num_batches_tracked) keeps the
reference forward, as before.
"""
import copy

import pytest
import torch

import fastp2p
from fastp2p import reference
from fastp2p.nn.fused import norm_kwargs
from fastp2p.ops import norm_act, norm_act_into
from helpers.network_checks import unet_pair
from helpers.tolerances import FP32_NETWORK, assert_close

STEPS = 3


def _patchgan_pair():
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.NLayerDiscriminator(
        4, 4, 2, reference.get_norm_layer("batch")))
    ours = fastp2p.PatchDiscriminator(4, ndf=4, n_layers=2, norm="batch")
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _train_forwards(net, x, steps=STEPS):
    for step in range(steps):
        net(x + 0.1 * step).sum().backward()


def _assert_checkpoints_match(ours, theirs):
    mine, expected = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(expected)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            assert mine[key].dtype == torch.int64 and torch.equal(mine[key], value), key
        else:
            assert_close(mine[key], value, FP32_NETWORK, key)


def test_patchgan_checkpoint_matches_reference_after_training_steps(backend):
    ours, theirs = _patchgan_pair()
    x = torch.rand(2, 4, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _train_forwards(ours.train(), x)
    _train_forwards(theirs.train(), x)
    _assert_checkpoints_match(ours, theirs)
    counts = [v.item() for k, v in ours.state_dict().items() if "num_batches" in k]
    assert counts and all(count == STEPS for count in counts)
    with torch.no_grad():  # eval: nothing counted, nothing updated
        ours.eval()(x)
        theirs.eval()(x)
    _assert_checkpoints_match(ours, theirs)


def test_unet_checkpoint_matches_reference_after_training_steps(backend):
    """The decoder's norms go through norm_act_concat, the encoder's through norm_act."""
    ours, theirs64 = unet_pair("batch", 5)
    theirs = copy.deepcopy(theirs64).float()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _train_forwards(ours.train(), x)
    _train_forwards(theirs.train(), x)
    _assert_checkpoints_match(ours, theirs)
    assert ours.state_dict()["model.model.1.model.2.num_batches_tracked"].item() == STEPS


def test_momentum_none_keeps_the_reference_forward_and_its_count(backend):
    """Cumulative averaging (momentum=None) reads num_batches_tracked: the fused path does not
    take it in training (norm_supported), so the module's own forward counts and averages."""
    ours, theirs = _patchgan_pair()
    for net in (ours, theirs):
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
    x = torch.rand(2, 4, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _train_forwards(ours.train(), x)
    _train_forwards(theirs.train(), x)
    _assert_checkpoints_match(ours, theirs)


def test_norm_kwargs_hands_the_counter_to_the_op_only_in_training():
    bn = torch.nn.BatchNorm2d(3)
    assert norm_kwargs(bn.train())["num_batches_tracked"] is bn.num_batches_tracked
    assert norm_kwargs(bn.eval())["num_batches_tracked"] is None
    untracked = torch.nn.BatchNorm2d(3, track_running_stats=False).train()
    assert norm_kwargs(untracked)["num_batches_tracked"] is None
    assert bn.num_batches_tracked.item() == 0  # building the arguments counts nothing


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
def test_op_counts_only_a_training_batch_norm_with_running_stats(backend, grad):
    x = torch.randn(2, 3, 4, 4, requires_grad=grad)
    mean, var = torch.zeros(3), torch.ones(3)
    batches = torch.tensor(5)
    norm_act(x, None, None, mean, var, norm="batch", num_batches_tracked=batches)
    assert batches.item() == 6
    norm_act(x, None, None, mean, var, norm="batch", training=False,
             num_batches_tracked=batches)
    norm_act(x, None, None, norm="batch", num_batches_tracked=batches)  # no running stats
    norm_act(x, norm="instance", num_batches_tracked=batches)
    assert batches.item() == 6
    norm_act_into(x.detach(), None, None, mean, var, torch.empty(2, 3, 4, 4), 0, norm="batch",
                  num_batches_tracked=batches)
    assert batches.item() == 7


@pytest.mark.parametrize("bad", [torch.tensor(1.0), torch.zeros(2, dtype=torch.int64), 3],
                         ids=["float", "two-elements", "int"])
def test_a_bad_counter_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match="num_batches_tracked must be one int64 element"):
        norm_act(torch.randn(2, 3, 4, 4), None, None, torch.zeros(3), torch.ones(3),
                 norm="batch", num_batches_tracked=bad)
