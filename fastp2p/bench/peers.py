"""The training peers of DESIGN.md §6 and the one pix2pix step they all run.

Every PyTorch peer runs :class:`TrainStep` (plain PyTorch, parametrised by precision, memory
format and optimizer options) under a different execution: eager, ``torch.compile`` of G and D
separately (as PyTorch's maintainers advise for GANs), or the whole step captured as one CUDA
graph. The fastp2p peer runs ``fastp2p.train.engine.Pix2PixEngine``, imported only when it runs
so that its absence shows up as that peer's failure, not the suite's.
"""
import contextlib

import torch
import torch.nn as nn

from fastp2p.bench.networks import NetworkConfig, build_pair
from fastp2p.bench.peer_specs import PeerSpec
from fastp2p.nn.cuda_graphs import capture
from fastp2p.nn.network_state import set_requires_grad

LAMBDA_L1 = 100.0
LR, BETAS = 2e-4, (0.5, 0.999)


class TrainStep:
    """One pix2pix update, exactly the reference's: fake = G(A); D on (A, fake.detach()) and
    (A, B) with 0.5 * (BCE_fake + BCE_real); G on BCE(D(A, fake), real) + 100 * L1(fake, B);
    Adam(2e-4, (0.5, 0.999)) for each. D is frozen during the G update, as in the reference.

    ``run_g`` / ``run_d`` are what the forward passes call (the modules, or compiled wrappers
    of them); ``capturable`` readies Adam for CUDA-graph capture; ``autocast_cache`` must be
    False while capturing (the autocast weight cache would hold tensors from outside the graph).
    """

    def __init__(self, generator, discriminator, *, device, precision, fused_adam,
                 capturable=False, run_g=None, run_d=None, autocast_cache=True):
        from fastp2p.reference import GANLoss

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.generator, self.discriminator = generator, discriminator
        # `is None`, not `or`: truth-testing a compiled module asks the wrapped one for len()
        self.run_g = generator if run_g is None else run_g
        self.run_d = discriminator if run_d is None else run_d
        device_type = torch.device(device).type
        self.autocast = (lambda: torch.autocast(device_type, dtype=torch.bfloat16,
                                                cache_enabled=autocast_cache)) \
            if precision == "bf16" else contextlib.nullcontext
        adam = {"lr": LR, "betas": BETAS}
        if fused_adam:
            adam["fused"] = True
        if capturable:
            adam["capturable"] = True
        self.optimizer_g = torch.optim.Adam(generator.parameters(), **adam)
        self.optimizer_d = torch.optim.Adam(discriminator.parameters(), **adam)
        self.gan_loss = GANLoss("vanilla").to(device)
        self.l1_loss = nn.L1Loss()

    def __call__(self, real_a, real_b):
        with self.autocast():
            fake_b = self.run_g(real_a)
        set_requires_grad(self.discriminator, True)
        self.optimizer_d.zero_grad(set_to_none=True)
        with self.autocast():
            loss_d_fake = self.gan_loss(self.run_d(torch.cat((real_a, fake_b.detach()), 1)),
                                        False)
            loss_d_real = self.gan_loss(self.run_d(torch.cat((real_a, real_b), 1)), True)
            loss_d = (loss_d_fake + loss_d_real) * 0.5
        loss_d.backward()
        self.optimizer_d.step()

        set_requires_grad(self.discriminator, False)
        self.optimizer_g.zero_grad(set_to_none=True)
        with self.autocast():
            loss_g = (self.gan_loss(self.run_d(torch.cat((real_a, fake_b), 1)), True)
                      + self.l1_loss(fake_b, real_b) * LAMBDA_L1)
        loss_g.backward()
        self.optimizer_g.step()


def capture_whole_step(step, real_a, real_b, warmup_iterations: int = 3):
    """``capture`` of ``step(real_a, real_b)``: the inputs are the graph's static buffers."""
    return capture(lambda: step(real_a, real_b), warmup_iterations)


def build_peer_step(spec: PeerSpec, config: NetworkConfig, real_a, real_b, *, device,
                    seed: int = 0):
    """Networks, optimizers and inputs for ``spec``; returns a no-argument step function.

    The batch is converted to the peer's memory format here, once, as a data loader would.
    """
    device_type = torch.device(device).type
    if spec.cuda_only and device_type != "cuda":
        raise ValueError(f"peer {spec.name} needs a CUDA device")
    options = spec.options(device_type)
    memory_format = torch.channels_last if options["channels_last"] else torch.contiguous_format
    real_a = real_a.contiguous(memory_format=memory_format)
    real_b = real_b.contiguous(memory_format=memory_format)

    if spec.execution == "fastp2p":
        from fastp2p.train.engine import Pix2PixEngine

        generator, discriminator = build_pair(config, fast=True, device=device, seed=seed)
        engine = Pix2PixEngine(generator, discriminator, gan_mode="vanilla",
                               lambda_L1=LAMBDA_L1, lr=LR, beta1=BETAS[0], **options)
        return lambda: engine.step(real_a, real_b)

    generator, discriminator = build_pair(config, fast=False, device=device, seed=seed)
    generator.to(memory_format=memory_format)
    discriminator.to(memory_format=memory_format)
    graphed = spec.execution == "cuda-graph"
    run_g = run_d = None
    if spec.execution == "compile":
        run_g = torch.compile(generator, mode=spec.compile_mode, dynamic=False)
        run_d = torch.compile(discriminator, mode=spec.compile_mode, dynamic=False)
    step = TrainStep(generator, discriminator, device=device, precision=options["precision"],
                     fused_adam=options["fused_adam"], capturable=graphed, run_g=run_g,
                     run_d=run_d, autocast_cache=not graphed)
    if graphed:
        return capture_whole_step(step, real_a, real_b)
    if spec.compile_mode == "reduce-overhead":
        def step_with_mark():
            # tells cudagraph trees that a new iteration starts: last step's outputs are dead
            torch.compiler.cudagraph_mark_step_begin()
            step(real_a, real_b)
        return step_with_mark
    return lambda: step(real_a, real_b)
