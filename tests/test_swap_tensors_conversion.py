"""Under torch.__future__.set_swap_module_params_on_conversion(True), `.to()`/`.double()` and
load_state_dict swap each parameter's tensor in place (torch.utils.swap_tensors), which refuses
a tensor with a weak reference. fastp2p's caches kept one to every weight they watched, so after
any forward both failed ("Couldn't swap Conv2d.weight"; QA r54); and the outputs must follow."""
import copy

import pytest
import torch

import fastp2p


@pytest.fixture
def swapping():
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)


NETWORKS = {"unet": lambda: fastp2p.UNet(3, 3, 5, ngf=8, norm="batch"),
            "patchgan": lambda: fastp2p.PatchDiscriminator(3, ndf=8, n_layers=2, norm="batch")}


def _randomised(network):
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor).abs() + 0.1)
    return network.eval()


@pytest.mark.parametrize("name", NETWORKS)
def test_conversion_and_loading_swap_after_a_forward_and_outputs_follow(swapping, name):
    torch.manual_seed(0)
    net, other = _randomised(NETWORKS[name]()), _randomised(NETWORKS[name]())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        net(x)                       # fills the caches that watch the weights
        twin = copy.deepcopy(net)
        weight = next(net.parameters())
        net.double()
        assert weight.dtype == torch.float64   # swapped in place: the same Parameter object
        assert torch.allclose(net(x.double()), twin.double()(x.double()), rtol=0, atol=1e-12)
        net.float()
        net.load_state_dict(other.state_dict())
        assert torch.equal(net(x), other(x))
