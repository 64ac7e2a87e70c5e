"""The networks on the meta device (shape inference, FLOP counting, deferred initialisation) run
the reference forward, as the reference modules do: the fused kernels have no meta form, and
torch's autocast query raises for the meta device."""
import pytest
import torch

from helpers.network_checks import network_pair


@pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_a_meta_network_gives_the_references_output_shape(kind, train):
    ours, theirs = (net.to("meta").train(train) for net in network_pair(kind))
    x = torch.empty(2, 3, 32, 32, device="meta", requires_grad=True)
    out, expected = ours(x), theirs(x)
    assert out.is_meta and out.shape == expected.shape and out.dtype == expected.dtype
    out.sum().backward()
    assert x.grad.is_meta and x.grad.shape == x.shape


def test_a_meta_input_on_a_cpu_network_is_refused_in_one_line():
    ours, _ = network_pair("unet")
    with pytest.raises(ValueError, match="is on meta but the module's parameters are on cpu"):
        ours(torch.empty(1, 3, 32, 32, device="meta"))
