"""fastp2p.graphed runs the module eagerly while a forward hook is set on it, on a submodule or
globally (and says so once): a replay runs no Python, so a hook added after a capture would
never fire, and one set at capture time would stay in the graph's output after it is removed.
torch's hook-based spectral_norm / weight_norm pre-hooks (tensor work only) are captured as
before. Driven on the CPU through a stand-in capture (tests/helpers/graph_stand_in.py)."""
import warnings

import pytest
import torch
import torch.nn as nn

import fastp2p
from helpers.graph_stand_in import OnCuda, capture_on_the_cpu


def _net():
    torch.manual_seed(0)
    return fastp2p.UNet(3, 3, 5, 4).eval()


def _image(seed):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1).as_subclass(OnCuda)


def _doubling_hook(kind):
    """A hook of ``kind`` that doubles what passes through it, and a list of the calls it saw."""
    calls = []

    def forward_hook(module, args, output):
        calls.append(module)
        return output * 2

    def pre_hook(module, args):
        calls.append(module)
        return (args[0] * 2,)

    return (forward_hook if kind == "forward" else pre_hook), calls


def _register(net, where, kind, hook):
    if where == "global":
        register = (nn.modules.module.register_module_forward_hook if kind == "forward"
                    else nn.modules.module.register_module_forward_pre_hook)
        return register(hook)
    module = net if where == "root" else net.model.model[1]  # the first down convolution
    if kind == "forward":
        return module.register_forward_hook(hook)
    return module.register_forward_pre_hook(hook)


def _eager(net, x):
    with torch.no_grad():
        return net(x.as_subclass(torch.Tensor))


@pytest.mark.parametrize("kind", ["forward", "pre"])
@pytest.mark.parametrize("where", ["root", "inner", "global"])
def test_a_hook_added_after_capture_fires_on_every_call(monkeypatch, where, kind):
    net = _net()
    captures = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    translate(_image(1))
    assert len(captures) == 1
    hook, calls = _doubling_hook(kind)
    handle = _register(net, where, kind, hook)
    try:
        for seed in (2, 3):
            x = _image(seed)
            before = len(calls)
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                got = translate(x)
            torch.testing.assert_close(got, _eager(net, x), rtol=0, atol=0)
            assert len(calls) > before  # the hook ran for this call (twice: once in _eager)
            # said once, on the first eager call
            assert [str(w.message) for w in warned if "forward hook" in str(w.message)] == (
                ["fastp2p.graphed: UNet (or a submodule, or the process) has a forward hook: "
                 "calls run eagerly while it is set, as a graph replay would not call it"]
                if seed == 2 else [])
        assert len(captures) == 1  # nothing captured with the hook set
    finally:
        handle.remove()


@pytest.mark.parametrize("where", ["root", "inner", "global"])
def test_a_hook_removed_leaves_nothing_of_itself_in_later_replays(monkeypatch, where):
    net = _net()
    captures = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    hook, _ = _doubling_hook("forward")
    handle = _register(net, where, "forward", hook)
    try:
        with pytest.warns(UserWarning, match="has a forward hook"):
            translate(_image(1))
    finally:
        handle.remove()
    x = _image(1)
    first = translate(x)  # the first capture: made without the hook
    torch.testing.assert_close(first, _eager(net, x), rtol=0, atol=0)
    torch.testing.assert_close(translate(x), first, rtol=0, atol=0)  # a replay
    assert len(captures) == 1
    assert next(iter(translate._captures.values())).graph.replays == 1


@pytest.mark.parametrize("reparametrize", [nn.utils.spectral_norm, nn.utils.weight_norm])
def test_torchs_hook_based_weight_reparametrizations_are_captured(monkeypatch, reparametrize):
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(3, 4, n_layers=2).eval()
    for layer in list(net.modules()):
        if isinstance(layer, nn.Conv2d):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # weight_norm's deprecation
                reparametrize(layer)
    captures = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either
        outputs = [translate(_image(1)) for _ in range(3)]
    assert len(captures) == 1
    assert next(iter(translate._captures.values())).graph.replays == 2
    for output in outputs:
        torch.testing.assert_close(output, _eager(net, _image(1)), rtol=0, atol=0)


def test_a_subclass_of_a_capturable_hook_runs_eagerly():
    """Only torch's own SpectralNorm / WeightNorm hooks are known to do tensor work only: a
    subclass may count, log or choose in Python, which a replay would skip."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    from fastp2p.nn.graph_replay import _ModuleTensors

    class CountingSpectralNorm(SpectralNorm):
        calls = 0

        def __call__(self, module, inputs):
            CountingSpectralNorm.calls += 1
            return super().__call__(module, inputs)

    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    nn.utils.spectral_norm(net[0])
    assert not _ModuleTensors(net).forward_hooked()
    (key,) = net[0]._forward_pre_hooks
    net[0]._forward_pre_hooks[key].__class__ = CountingSpectralNorm
    assert _ModuleTensors(net).forward_hooked()
