"""FASTP2P_PDL=1 (programmatic dependent launch, kernels/pdl.py; issue 17 item 4): on only for CUDA
GPUs of compute capability >= 9. On CPU tensors (the interpreter) it must change nothing: the
same bits from every kernel that carries the flag. On a GPU, the captured bf16 engine step with
the benchmark peer's setting trains bit for bit as without it (skipped without a GPU)."""
import contextlib
import os
import types

import pytest
import torch

from fastp2p.bench.peer_specs import environment, peer_by_name, peer_environment
from helpers.forced_backend import force_backend
from helpers.triton_interpreter import KERNELS

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")


def _pdl():
    import fastp2p.kernels.pdl
    return fastp2p.kernels.pdl


def _run_every_flagged_kernel():
    """Outputs of the launchers of every kernel with the PDL flag, on fixed CPU data."""
    from fastp2p.kernels import adam, losses, norm_act, step_losses

    gen = torch.Generator().manual_seed(0)
    outputs = []
    x = torch.randn(2, 5, 6, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(5, generator=gen) + 0.5, torch.rand(5, generator=gen) - 0.5
    running = torch.zeros(5), torch.ones(5)
    grad = torch.randn(x.shape, generator=gen)
    for norm, one_pass_max in (("batch", 8192), ("batch", 0), ("instance", 0)):
        with _patched(norm_act, ONE_PASS_MAX_ELEMENTS=one_pass_max, REDUCTION_PROGRAMS=3):
            out = torch.full_like(x, float("nan"))
            mean, rstd = norm_act.norm_act_fwd(
                x, weight, bias, *running, out, 0, norm=norm, training=True, momentum=0.1,
                eps=1e-5, activation="leaky_relu", slope=0.2, dropout_p=0.5, seed=3, offset=1)
            outputs += [out, mean, rstd, running[0].clone(), running[1].clone()]
            outputs += [t for t in norm_act.norm_act_bwd(
                grad, x, weight, bias, mean, rstd, norm=norm, activation="leaky_relu",
                slope=0.2, dropout_p=0.5, seed=3, offset=1)]
    logits = torch.randn(2, 1, 5, 5, generator=gen)
    fake, real = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    outputs += list(losses.gan_loss_fwd(logits, mode="vanilla", target_is_real=True))
    outputs += list(losses.l1_loss_fwd(fake, real))
    outputs += list(step_losses.d_step_losses_fwd(logits, logits * 0.5, mode="lsgan"))
    outputs += list(step_losses.g_step_losses_fwd(logits, fake, real, mode="vanilla",
                                                  lambda_l1=100.0))
    numel, copied = 300, 200
    master = torch.randn(numel, generator=gen)
    moments = torch.zeros(numel), torch.zeros(numel)
    copy = torch.empty(copied, dtype=torch.bfloat16)
    adam.adam_step(master, *moments, torch.randn(copied, generator=gen).bfloat16(),
                   torch.randn(numel - copied, generator=gen), copy, torch.tensor(1e-3),
                   torch.zeros(1, dtype=torch.int64),
                   torch.tensor([0.5, 0.999, 1e-8, 0.0], dtype=torch.float64),
                   adam.adam_programs(numel, master.device))
    return outputs + [master, *moments, copy]


@contextlib.contextmanager
def _patched(module, **values):
    previous = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(module, name, value)


@needs_triton
@pytest.mark.interpreter
def test_pdl_variable_changes_nothing_on_cpu_tensors(monkeypatch):
    monkeypatch.delenv("FASTP2P_PDL", raising=False)
    without = _run_every_flagged_kernel()
    monkeypatch.setenv("FASTP2P_PDL", "1")
    assert _pdl().requested()
    assert _pdl().launch_options(torch.empty(1)) == {}
    with_variable = _run_every_flagged_kernel()
    assert len(without) == len(with_variable) > 30
    for a, b in zip(without, with_variable):
        bits_a, bits_b = (t.contiguous().view(-1).view(torch.uint8) for t in (a, b))
        assert a.dtype == b.dtype and torch.equal(bits_a, bits_b)  # NaNs included


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("variable,capability,expected_on", [
    ("1", (9, 0), True), ("1", (10, 0), True), ("1", (8, 9), False), (None, (9, 0), False),
    ("0", (9, 0), False)])
def test_pdl_is_on_only_when_asked_for_on_compute_capability_9(monkeypatch, variable, capability,
                                                               expected_on):
    pdl = _pdl()
    if variable is None:
        monkeypatch.delenv("FASTP2P_PDL", raising=False)
    else:
        monkeypatch.setenv("FASTP2P_PDL", variable)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability)
    pdl._capable.cache_clear()
    try:
        on_cuda = types.SimpleNamespace(device=torch.device("cuda", 0))
        expected = {"PDL": True, "launch_pdl": True} if expected_on else {}
        assert pdl.launch_options(on_cuda) == expected
    finally:
        pdl._capable.cache_clear()


def test_the_benchmark_peer_sets_the_variable_on_cuda_only(monkeypatch):
    peer = peer_by_name("fastp2p-pdl")
    assert peer.cuda_only and peer.options("cuda") == peer_by_name("fastp2p").options("cuda")
    assert peer_environment(peer, "cuda") == {"FASTP2P_PDL": "1"}
    assert peer_environment(peer, "cpu") == {}
    assert peer_environment(peer_by_name("fastp2p"), "cuda") == {}
    monkeypatch.delenv("FASTP2P_PDL", raising=False)
    with environment(peer_environment(peer, "cuda")):
        assert os.environ["FASTP2P_PDL"] == "1"
    assert "FASTP2P_PDL" not in os.environ


@pytest.mark.cuda
@pytest.mark.parametrize("options", [
    {},
    # the PDL kernels the default step does not launch: Adam's (with its ticket), the step losses
    {"master_weights": True, "fused_step_losses": True},
    {"side_streams": True},  # PDL kernels on two streams, the arrival counters shared
], ids=["default", "master-weights-step-losses", "side-streams"])
def test_captured_bf16_step_with_pdl_trains_bit_for_bit_as_without(monkeypatch, options):
    """The engine's captured bf16 step, 10 steps, with the fastp2p-pdl peer's environment and
    without, for the default options and for the ones that launch the other PDL kernels: the
    same losses and weights, bit for bit (deterministic cuDNN algorithms, so that only PDL
    differs). On a GPU below compute capability 9 PDL stays off: trivially equal."""
    from fastp2p.train.engine import LOSS_NAMES, Pix2PixEngine
    from helpers.train_helpers import parameters_and_buffers, random_batches, tiny_networks

    force_backend(monkeypatch, "triton")
    monkeypatch.delenv("FASTP2P_PDL", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    batches = [(a.cuda(), b.cuda()) for a, b in random_batches(10, size=64)]
    results = []
    for variables in ({}, peer_environment(peer_by_name("fastp2p-pdl"), "cuda")):
        with environment(variables):
            netG, netD = (net.cuda() for net in tiny_networks(num_downs=6))
            engine = Pix2PixEngine(netG, netD, precision="bf16", channels_last=True,
                                   cuda_graph=True, **options)
            for batch in batches:
                engine.step(*batch)
            losses = engine.read_losses()
            results.append(([losses[name] for name in LOSS_NAMES],
                            [t.detach().clone() for t in parameters_and_buffers(netG, netD)]))
    assert engine._graph is not None
    (losses_off, state_off), (losses_on, state_on) = results
    assert losses_on == losses_off
    for on, off in zip(state_on, state_off):
        assert torch.equal(on, off)
