"""MasterWeightsAdam(buckets=N) (fastp2p.train.master_weights_adam), the layout behind
Pix2PixEngine(optimizer_overlap=True): which parameters share a bucket, one launch of the Adam
kernel per bucket giving the unbucketed launch's values bit for bit (masters, moments, the bf16
or float32 copy; a bucket's slice crosses the copied / float32 boundary), a bucket's launch
writing nothing outside its slice, and the optimizer state saved in the unbucketed order.
CPU: the kernel through the Triton interpreter."""
import copy

import pytest
import torch

from helpers.train_helpers import tiny_networks
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]
BUCKETS = 4


def _optimizers(copy_dtype, buckets, memory_format=torch.contiguous_format, weight_decay=0.0):
    from fastp2p.train.master_weights_adam import MasterWeightsAdam

    netG, _ = tiny_networks()
    netG.to(memory_format=memory_format)
    options = dict(lr=2e-4, betas=(0.5, 0.999), weight_decay=weight_decay,
                   copy_dtype=copy_dtype)
    whole = MasterWeightsAdam(copy.deepcopy(netG), **options)
    bucketed = MasterWeightsAdam(netG, buckets=buckets, **options)
    return whole, bucketed


def _write_same_grads(optimizers, seed):
    generator = torch.Generator().manual_seed(seed)
    by_name = [dict(zip(opt._names, opt._params)) for opt in optimizers]
    for name in optimizers[0]._names:
        values = torch.randn(by_name[0][name].shape, generator=generator) * 1e-2
        for params in by_name:
            params[name].grad.copy_(values)


def _per_parameter(opt) -> dict:
    """name -> the parameter's model tensor, master and moments, as bit patterns."""
    out = {}
    for name, param in zip(opt._names, opt._params):
        state = opt.state[param]
        for key, value in (("model", param.detach()), *state.items()):
            out[f"{key} {name}"] = value.clone()
    return out


def _gaps(opt) -> torch.Tensor:
    """The master / moment elements that belong to no parameter (between buckets)."""
    used = torch.zeros(opt.master.numel(), dtype=torch.bool)
    for offset, numel in zip(opt._offsets, opt._numels):
        used[offset:offset + numel] = True
    return torch.cat([buffer[~used] for buffer in (opt.master, opt.exp_avg, opt.exp_avg_sq)])


def test_buckets_take_the_last_registered_parameters_first():
    from fastp2p.train.master_weights_adam import bucket_members

    assert bucket_members([5, 5, 5, 5], 1) == [[0, 1, 2, 3]]
    assert bucket_members([5, 5, 5, 5], 2) == [[2, 3], [0, 1]]
    # a large parameter stays whole in the bucket it starts in; empty buckets are dropped
    assert bucket_members([1, 1, 100, 1], 4) == [[2, 3], [0, 1]]
    members = bucket_members([3, 7, 1, 40, 2, 9, 9, 1], 3)
    assert sorted(i for bucket in members for i in bucket) == list(range(8))
    assert len(members) <= 3 and 7 in members[0] and 0 in members[-1]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "nhwc"])
@pytest.mark.parametrize("copy_dtype,weight_decay", [(torch.bfloat16, 0.0), (torch.float32, 0.01)],
                         ids=["bf16", "fp32-decay"])
def test_one_launch_per_bucket_is_the_one_launch_bit_for_bit(copy_dtype, weight_decay,
                                                             memory_format):
    whole, bucketed = _optimizers(copy_dtype, BUCKETS, memory_format, weight_decay)
    assert len(bucketed.bucket_params) == BUCKETS
    copied = {id(p) for p in bucketed._params if "master" in bucketed.state[p]}
    mixed = [b for b in bucketed.bucket_params
             if {id(p) in copied for p in b} == {True, False}]
    assert mixed  # some slices cross from the copied region into the float32 one
    assert bucketed.master.numel() > whole.master.numel()  # aligned slices leave gaps
    for step in range(3):
        _write_same_grads((whole, bucketed), seed=step)
        with torch.no_grad():
            for opt in (whole, bucketed):
                opt.copy.fill_(float("nan"))
            for params in bucketed.bucket_params:  # poison only what belongs to a parameter
                for param in params:
                    if id(param) in copied:
                        param.detach().fill_(float("nan"))
        whole.step()
        bucketed.step()
        expected, got = _per_parameter(whole), _per_parameter(bucketed)
        for key in expected:
            assert torch.equal(got[key], expected[key]), f"{key} after step {step + 1}"
    assert not _gaps(bucketed).any()  # Adam leaves the zeros between buckets at zero
    assert bucketed.steps == whole.steps == 3
    assert bucketed._tickets.tolist() == [3 * n for n in bucketed._num_programs]


def test_a_bucket_launch_writes_its_slice_only():
    whole, bucketed = _optimizers(torch.bfloat16, BUCKETS)
    _write_same_grads((whole, bucketed), seed=0)
    whole.step()
    names = {id(p): n for n, p in zip(bucketed._names, bucketed._params)}
    for index, params in enumerate(bucketed.bucket_params):
        before = _per_parameter(bucketed)
        tickets = bucketed._tickets.clone()
        bucketed.step_bucket(index)
        after, expected = _per_parameter(bucketed), _per_parameter(whole)
        ours = {names[id(p)] for p in params}
        for key in after:
            target = expected if key.split(" ", 1)[1] in ours else before
            assert torch.equal(after[key], target[key]), f"bucket {index}: {key}"
        changed = (bucketed._tickets != tickets).nonzero().flatten().tolist()
        assert changed == [index]
    assert not _gaps(bucketed).any()


def test_the_saved_state_is_in_the_unbucketed_order():
    from fastp2p.train.master_weights_adam import MasterWeightsAdam

    whole, bucketed = _optimizers(torch.bfloat16, BUCKETS)
    for step in range(2):
        _write_same_grads((whole, bucketed), seed=step)
        whole.step()
        bucketed.step()
    saved, expected = bucketed.state_dict(), whole.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    assert saved["state"]["step"] == expected["state"]["step"] == 2
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(saved["state"][key], expected["state"][key])
    other = MasterWeightsAdam(tiny_networks()[0], buckets=2, copy_dtype=torch.bfloat16)
    other.load_state_dict(saved)
    assert other.steps == 2 and other._tickets.tolist() == [2 * n for n in other._num_programs]
    assert torch.equal(other.state_dict()["state"]["exp_avg_sq"], saved["state"]["exp_avg_sq"])
