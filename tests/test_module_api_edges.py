"""Edges of the drop-in networks' nn.Module behaviour, against the reference modules: a
convolution's weight or bias replaced by a plain tensor or a buffer (after the layers were
listed: no module registration tells the fused forward); ``torch.jit.trace`` without warnings
from fastp2p's input checks; a pickled or deep-copied network, which carries none of the fused
forward's caches."""
import copy
import io
import pickle
import warnings

import pytest
import torch

from fastp2p.nn.layer_walk import Walk
from helpers.network_checks import network_pair, random_images
from helpers.tolerances import FP32_NETWORK, assert_close

KINDS = ["unet", "patch", "pixel"]


def _conv_before_a_norm(net, kind: str):
    """A convolution a BatchNorm follows: in eval the fused forward folds the norm into it,
    reading its weight and bias."""
    if kind == "unet":
        return net.model.model[1].model[1]
    return (net.model if kind == "patch" else net.net)[2]


def _replace(conv, name: str, how: str) -> None:
    """``conv``'s weight (doubled) or bias (0.5 everywhere; the layer had none) set again as a
    plain tensor attribute or as a buffer, as hypernetwork-style code does."""
    value = (conv.weight.detach() * 2 if name == "weight"
             else torch.full((conv.out_channels,), 0.5))
    delattr(conv, name)
    if how == "attribute":
        setattr(conv, name, value)
    else:
        conv.register_buffer(name, value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,how", [("weight", "attribute"), ("weight", "buffer"),
                                      ("bias", "attribute")])
@pytest.mark.parametrize("called_before", [True, False], ids=["after-a-call", "first-call"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_a_convolution_parameter_replaced_by_a_plain_tensor_is_read(kind, name, how,
                                                                    called_before, train):
    ours, theirs = network_pair(kind)
    x = random_images(32)
    for net in (ours, theirs):
        net.train(train)
        if called_before:
            with torch.no_grad():
                net(x)
        _replace(_conv_before_a_norm(net, kind), name, how)
    with torch.no_grad():
        for call in range(2):
            assert_close(ours(x), theirs(x), FP32_NETWORK, f"call {call}")


@pytest.mark.parametrize("kind", KINDS)
def test_jit_trace_of_a_network_warns_no_more_than_the_references(kind):
    """The reference modules trace without a TracerWarning; fastp2p's input checks compared
    the traced sizes (a warning each, twice: check_trace traces again). The trace still
    computes the reference's output at another size."""
    ours, theirs = network_pair(kind)
    ours.eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        traced = torch.jit.trace(ours, random_images(32))
    assert [str(w.message) for w in caught if w.category is torch.jit.TracerWarning] == []
    larger = random_images(64)
    with torch.no_grad():
        assert_close(traced(larger), copy.deepcopy(theirs).double().eval()(larger.double()),
                     FP32_NETWORK, "traced at 32, run at 64")


class _NamedGlobals(pickle.Unpickler):
    """Records every global (module.qualname) a pickle needs to load."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.names = set()

    def find_class(self, module, name):
        self.names.add(f"{module}.{name}")
        return super().find_class(module, name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_pickled_or_copied_network_carries_no_cache_and_runs(kind):
    """After calls that list the layers (the walk cached on the tree's root), a pickle of the
    network (torch.save(model), a spawned process's argument) names no fastp2p class but its
    modules' own, so a later fastp2p that changes its internals still loads it; the loaded
    network and a deep copy list their own layers and give the reference's outputs (a hook
    added to the copy fires there only)."""
    ours, theirs = network_pair(kind)
    x = random_images(32)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        ours(x)
        expected = copy.deepcopy(theirs).double()(x.double())
    data = pickle.dumps(ours)
    loading = _NamedGlobals(data)
    loaded = loading.load()
    own_classes = {f"{type(m).__module__}.{type(m).__qualname__}" for m in ours.modules()}
    assert {name for name in loading.names if name.startswith("fastp2p")} <= own_classes
    copied = copy.deepcopy(ours)
    fired = []
    inner = list(copied.modules())[3]
    inner.register_forward_hook(lambda *args: fired.append(True))
    with torch.no_grad():
        for name, net in (("pickled", loaded), ("deep copy", copied), ("original", ours)):
            assert_close(net(x), expected, FP32_NETWORK, name)
    assert fired == [True]


def test_the_walk_class_that_pickles_made_before_e2d97a1_name_still_loads():
    """Such a pickle holds the cached walk as a ``fastp2p.nn.fused._Walk`` (now
    fastp2p.nn.layer_walk.Walk) with the fields it had then, before conv_parameters."""
    old = pickle.loads(b"cfastp2p.nn.fused\n_Walk\n.")
    assert old is Walk and old(*range(10)).conv_parameters == ()
