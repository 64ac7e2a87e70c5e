"""fastp2p.graphed: whole-forward CUDA-graph replay with an eager fallback.

On the CPU: the fallback is the eager forward exactly (eval, and train mode with dropout and
BatchNorm statistics), and the invalidation logic (what a capture is specific to, and the
version check) is tested directly. The ``cuda`` tests check replay against eager bit for bit,
a poisoned static output, outputs that later calls do not overwrite, re-capture after a
weight change, and train-mode replays drawing the eager sequence's dropout masks.
"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn.graph_replay import GraphedModule, _ModuleTensors


def _unet(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = fastp2p.init_weights(fastp2p.UNet(3, 3, 6, 8, use_dropout=True, **kwargs),
                               "normal", 0.02)
    with torch.no_grad():  # running statistics away from the defaults, so folding shows
        net.train()(torch.rand(4, 3, 64, 64) * 2 - 1)
    net.set_dropout_rng(123, 0)
    return net


def _image(batch=2, seed=1, size=64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_cpu_fallback_is_the_eager_forward(train):
    net = _unet().train(train)
    eager_net = copy.deepcopy(net)
    translate = fastp2p.graphed(net)
    for seed in (1, 2, 3):
        x = _image(seed=seed)
        out = translate(x)
        with torch.no_grad():
            expected = eager_net(x)
        assert torch.equal(out, expected)
        assert not out.requires_grad
    assert net.dropout_rng.tolist() == eager_net.dropout_rng.tolist()
    for (name, ours), theirs in zip(net.state_dict().items(), eager_net.state_dict().values()):
        assert torch.equal(ours, theirs), name
    if train:
        assert net.dropout_rng[1].item() > 0  # the masks moved on with each call


def test_graphed_rejects_what_is_not_a_module():
    with pytest.raises(ValueError, match="expects an nn.Module"):
        fastp2p.graphed(lambda x: x)
    assert isinstance(fastp2p.graphed(_unet()), GraphedModule)


def test_state_changes_with_every_kind_of_parameter_or_buffer_change():
    net = _unet().eval()
    tensors = _ModuleTensors(net)
    state = tensors.state()
    with torch.no_grad():
        net(_image())
    assert tensors.state() == state  # an eval forward changes nothing
    conv, norm = net.model.model[1].model[1], net.model.model[1].model[2]
    changes = [
        lambda: conv.weight.add_(1e-3),
        lambda: norm.running_var.mul_(2),
        lambda: norm.running_mean.add_(1),
        lambda: net.load_state_dict(net.state_dict()),
        lambda: setattr(conv, "weight", nn.Parameter(conv.weight.detach().clone())),
        lambda: net.half(),
    ]
    for change in changes:
        with torch.no_grad():
            change()
        new_state = tensors.state()
        assert new_state != state
        state = new_state


def test_train_forward_changes_exactly_the_statistics_and_the_dropout_offset():
    net = _unet().train()
    tensors = _ModuleTensors(net)
    before = tensors.state()
    with torch.no_grad():
        net(_image())
    changed = tensors.changed(before, tensors.state())
    buffers = {id(b): name for name, b in net.named_buffers()}
    names = sorted(buffers[id(t)] for t in changed)
    norms = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    expected = sorted([f"{n}.{b}" for n in norms
                       for b in ("running_mean", "running_var", "num_batches_tracked")]
                      + ["dropout_rng"])
    assert names == expected


def test_signature_tells_apart_what_a_graph_is_specific_to():
    net = _unet().eval()
    tensors = _ModuleTensors(net)
    x = _image()
    base = tensors.signature(x)
    assert tensors.signature(_image(seed=5)) == base  # same kind of input: same graph
    others = [tensors.signature(_image(batch=1)), tensors.signature(x.double()),
              tensors.signature(x.contiguous(memory_format=torch.channels_last))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        others.append(tensors.signature(x))
    net.train()
    others.append(tensors.signature(x))
    net.eval()
    net.model.model[1].model[-1].train()  # one submodule (a Dropout) back in train mode
    others.append(tensors.signature(x))
    assert len(set(others)) == len(others) and base not in others


# ---- CUDA --------------------------------------------------------------------------------------
def _cuda_pair(train=False, channels_last=False):
    net = _unet().cuda().train(train)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net, copy.deepcopy(net)


def _cuda_image(seed, channels_last=False, batch=2):
    x = _image(batch=batch, seed=seed, device="cuda")
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("batch", [1, 2])
def test_cuda_replay_equals_eager_bit_for_bit(batch, channels_last, precision):
    net, eager_net = _cuda_pair(channels_last=channels_last)
    translate = fastp2p.graphed(net)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
    outputs, expected = [], []
    with autocast:
        for seed in (1, 2, 3):  # capture, then two replays
            x = _cuda_image(seed, channels_last, batch)
            outputs.append(translate(x))
            with torch.no_grad():
                expected.append(eager_net(x))
    assert len(translate._captures) == 1
    for seed, (out, ref) in enumerate(zip(outputs, expected)):
        assert torch.equal(out, ref), f"call {seed}"  # earlier results not overwritten either


@pytest.mark.cuda
def test_cuda_poisoned_static_output_is_fully_rewritten():
    net, eager_net = _cuda_pair()
    translate = fastp2p.graphed(net)
    translate(_cuda_image(1))
    (capture,) = translate._captures.values()
    capture.static_output.fill_(float("nan"))
    x = _cuda_image(2)
    out = translate(x)
    with torch.no_grad():
        assert torch.equal(out, eager_net(x))
    assert out.data_ptr() != capture.static_output.data_ptr()


@pytest.mark.cuda
def test_cuda_recaptures_after_a_weight_or_statistic_change():
    net, eager_net = _cuda_pair()
    translate = fastp2p.graphed(net)
    x = _cuda_image(1)
    translate(x)
    first = next(iter(translate._captures.values())).graph
    for model in (net, eager_net):
        with torch.no_grad():
            model.model.model[1].model[1].weight.mul_(1.5)
            model.model.model[1].model[2].running_var.mul_(2)
    out = translate(x)
    assert next(iter(translate._captures.values())).graph is not first
    with torch.no_grad():
        expected = eager_net(x)
    assert torch.equal(out, expected)
    assert torch.equal(translate(x), expected)  # and the new graph replays it


@pytest.mark.cuda
def test_cuda_train_mode_replays_follow_the_eager_sequence():
    """Batch statistics, running-statistic updates and dropout masks: N graphed calls equal N
    eager calls, and the dropout offset advances the same way."""
    net, eager_net = _cuda_pair(train=True)
    translate = fastp2p.graphed(net)
    for seed in range(4):
        x = _cuda_image(seed)
        out = translate(x)
        with torch.no_grad():
            expected = eager_net(x)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert len(translate._captures) == 1  # replays bump versions but do not re-capture
    assert net.dropout_rng.tolist() == eager_net.dropout_rng.tolist()
    for (name, ours), theirs in zip(net.state_dict().items(), eager_net.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_state_of_a_module_made_under_inference_mode():
    """Inference tensors have no version counter: their address stands for them. (The dropout
    stream is made outside inference mode even then, so that training can advance it later.)"""
    with torch.inference_mode():
        net = fastp2p.UNet(3, 3, 5, 4, use_dropout=True).eval()
    tensors = _ModuleTensors(net)
    state = tensors.state()
    inference = [t.is_inference() for t in (*net.parameters(), *net.buffers())]
    assert sum(inference) == len(inference) - 1 and not net.dropout_rng.is_inference()
    assert sum(version is None for _, version in state) == sum(inference)
    with torch.inference_mode():
        net.half()
    assert tensors.state() != state
