"""MasterWeightsAdam's state resumed into networks of another memory layout: --channels-last is
not inherited, and the flat moment buffers hold each parameter in its own memory order, so the
state of a channels-last run loaded into NCHW weights (or the reverse) gave every convolution
the moments of other elements, silently. Each parameter's moments come back as saved, element
by element, in whatever layout, with or without buckets. CPU: the kernel through the Triton
interpreter."""
import pytest
import torch

from helpers.train_helpers import tiny_networks
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]
LAYOUTS = (torch.contiguous_format, torch.channels_last)


def _optimizer(memory_format, buckets):
    from fastp2p.train.master_weights_adam import MasterWeightsAdam

    netG, _ = tiny_networks()
    netG.to(memory_format=memory_format)
    return MasterWeightsAdam(netG, lr=2e-4, betas=(0.5, 0.999), buckets=buckets)


def _moments(opt) -> dict:
    return {f"{key} {name}": opt.state[param][key].clone()
            for name, param in zip(opt._names, opt._params)
            for key in ("exp_avg", "exp_avg_sq")}


@pytest.mark.parametrize("saved_format, resumed_format, buckets",
                         [(LAYOUTS[1], LAYOUTS[0], 1), (LAYOUTS[0], LAYOUTS[1], 1),
                          (LAYOUTS[1], LAYOUTS[0], 2)])
def test_moments_resume_element_by_element_across_layouts(saved_format, resumed_format, buckets):
    saved = _optimizer(saved_format, buckets)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        for param in saved._params:
            param.grad.copy_(torch.randn(param.shape, generator=generator) * 1e-2)
        saved.step()
    resumed = _optimizer(resumed_format, buckets)
    resumed.load_state_dict(saved.state_dict())
    expected, got = _moments(saved), _moments(resumed)
    assert [name for name in expected if not torch.equal(got[name], expected[name])] == []
    assert any(param.dim() == 4 for param in resumed._params)   # layouts that differ


def test_a_state_with_strides_of_no_dense_layout_is_refused():
    saved = _optimizer(torch.contiguous_format, 1).state_dict()
    saved["param_groups"][0]["strides"][0] = [1, 1, 1, 1]
    with pytest.raises(ValueError, match="strides"):
        _optimizer(torch.contiguous_format, 1).load_state_dict(saved)


def test_an_older_state_without_strides_loads_into_the_layout_it_was_saved_in():
    saved = _optimizer(torch.channels_last, 1)
    saved.exp_avg.copy_(torch.arange(saved.exp_avg.numel(), dtype=torch.float32))
    state = saved.state_dict()
    del state["param_groups"][0]["strides"]
    resumed = _optimizer(torch.channels_last, 1)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.exp_avg, saved.exp_avg)
