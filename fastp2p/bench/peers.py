"""The training peers of DESIGN.md §6 and the one pix2pix step they all run.

Every PyTorch peer runs :class:`TrainStep` (plain PyTorch, parametrised by precision, memory
format and optimizer options) under a different execution: eager, ``torch.compile`` of G and D
separately (as PyTorch's maintainers advise for GANs), or the whole step captured as one CUDA
graph. The fastp2p peer runs ``fastp2p.train.engine.Pix2PixEngine``, imported only when it runs
so that its absence shows up as that peer's failure, not the suite's.
"""
import contextlib
import os
from dataclasses import dataclass

import torch
import torch.nn as nn

from fastp2p.bench.networks import NetworkConfig, build_pair
from fastp2p.nn.cuda_graphs import capture
from fastp2p.nn.network_state import set_requires_grad

LAMBDA_L1 = 100.0
LR, BETAS = 2e-4, (0.5, 0.999)


@dataclass(frozen=True)
class PeerSpec:
    name: str
    description: str
    precision: str = "bf16"          # "fp32" | "bf16" (bf16 autocast, no GradScaler)
    channels_last: bool = True
    cudnn_benchmark: bool = True
    fused_adam: bool = True
    execution: str = "eager"         # "eager" | "compile" | "cuda-graph" | "fastp2p"
    compile_mode: str | None = None
    cuda_only: bool = False
    on_cpu_by_default: bool = False  # part of the CPU peer set (--quick, --device cpu)
    master_weights: bool = False     # fastp2p: the engine's master_weights option (issue 17)
    fused_step_losses: bool = False  # fastp2p: the engine's fused_step_losses option (issue 17)
    side_streams: bool = False       # fastp2p: the engine's side_streams option (issue 17)
    optimizer_overlap: bool = False  # fastp2p: the engine's optimizer_overlap option (issue 17)
    split_conv_backward: bool = False  # fastp2p: the engine's split_conv_backward (issue 17)
    pdl: bool = False                # fastp2p: FASTP2P_PDL=1 around the run (issue 17)

    def options(self, device_type: str) -> dict:
        """The options as run on ``device_type``: the engine's keyword arguments for fastp2p
        (its CPU path is eager fp32), the step's for the PyTorch peers. cuDNN autotuning is
        set around every peer from ``cudnn_benchmark``."""
        if self.execution == "fastp2p":
            if device_type == "cuda":
                switched_on = {name: True for name in ("master_weights", "fused_step_losses",
                                                       "side_streams", "optimizer_overlap",
                                                       "split_conv_backward")
                               if getattr(self, name)}
                return {"precision": self.precision, "channels_last": self.channels_last,
                        "cuda_graph": True, **switched_on}
            return {"precision": "fp32", "channels_last": False, "cuda_graph": False}
        options = {"precision": self.precision, "channels_last": self.channels_last,
                   "fused_adam": self.fused_adam}
        if self.compile_mode:
            options["compile_mode"] = self.compile_mode
        return options


_TUNED = "bf16 autocast, channels-last, cudnn.benchmark, fused Adam"
PEERS = (
    # The reference implementation turns cudnn.benchmark on itself (BaseModel, for fixed-size
    # crops), so its users get autotuned convolutions too.
    PeerSpec("reference", "reference modules, eager fp32 NCHW, default Adam, cudnn.benchmark "
             "as the reference implementation sets it (what its users run)", precision="fp32",
             channels_last=False, fused_adam=False, on_cpu_by_default=True),
    PeerSpec("eager-tuned", f"reference modules, eager, {_TUNED}", on_cpu_by_default=True),
    PeerSpec("cuda-graph", "eager-tuned step captured whole as one CUDA graph (no fastp2p "
             "kernels): isolates launch overhead", execution="cuda-graph", cuda_only=True),
    PeerSpec("fastp2p", "fastp2p Pix2PixEngine: bf16, channels-last, whole-step CUDA graph "
             "(on a CPU: its eager fp32 path)", execution="fastp2p", on_cpu_by_default=True),
    PeerSpec("compile-default", "torch.compile(G), torch.compile(D) of eager-tuned, mode "
             "default", execution="compile", compile_mode="default"),
    PeerSpec("compile-reduce-overhead", "torch.compile of eager-tuned, mode reduce-overhead "
             "(CUDA graphs through cudagraph trees)", execution="compile",
             compile_mode="reduce-overhead"),
    PeerSpec("compile-max-autotune", "torch.compile of eager-tuned, mode "
             "max-autotune-no-cudagraphs", execution="compile",
             compile_mode="max-autotune-no-cudagraphs"),
    # Switched-off fastp2p options last: a time budget cuts them before the peers users pick.
    PeerSpec("fastp2p-master-weights", "fastp2p with master_weights=True: the optimizer keeps "
             "float32 masters and writes the bf16 weights (no per-step weight casts); off by "
             "default until measured faster", execution="fastp2p", cuda_only=True,
             master_weights=True),
    PeerSpec("fastp2p-step-losses", "fastp2p with fused_step_losses=True: each network step's "
             "losses, gradients and loss bookkeeping in one fused launch plus a finishing one; "
             "off by default until measured faster", execution="fastp2p", cuda_only=True,
             fused_step_losses=True),
    PeerSpec("fastp2p-side-streams", "fastp2p with side_streams=True: D's forward, loss and "
             "backward share on the real pair on a second CUDA stream inside the one graph, "
             "beside the fake pair's; off by default until measured faster",
             execution="fastp2p", cuda_only=True, side_streams=True),
    PeerSpec("fastp2p-optimizer-overlap", "fastp2p with master_weights=True and "
             "optimizer_overlap=True: each network's Adam in a few buckets of layers, each "
             "launched on a second CUDA stream as soon as the backward has finished its "
             "gradients, beside the rest of the backward; off by default until measured faster",
             execution="fastp2p", cuda_only=True, master_weights=True, optimizer_overlap=True),
    PeerSpec("fastp2p-split-conv-backward", "fastp2p with split_conv_backward=True: each "
             "convolution's weight gradient on a second CUDA stream beside its data gradient, "
             "inside the one graph; off by default until measured faster", execution="fastp2p",
             cuda_only=True, split_conv_backward=True),
    PeerSpec("fastp2p-pdl", "fastp2p with FASTP2P_PDL=1: the Triton kernels of the step use "
             "programmatic dependent launch on GPUs of compute capability >= 9 (a kernel's "
             "launch overlaps the previous one's end); off by default until measured faster",
             execution="fastp2p", cuda_only=True, pdl=True),
)
PEER_NAMES = tuple(peer.name for peer in PEERS)
PDL_ENV_VAR = "FASTP2P_PDL"  # read by fastp2p.kernels.pdl (kept here so no import of triton)


def peer_environment(spec: PeerSpec, device_type: str) -> dict:
    """Environment variables set around the peer's whole run (build, warm-up with its capture,
    timing, profile): FASTP2P_PDL=1 for a PDL peer on CUDA, else none."""
    return {PDL_ENV_VAR: "1"} if spec.pdl and device_type == "cuda" else {}


@contextlib.contextmanager
def environment(variables: dict):
    """``variables`` set in os.environ inside, the previous values restored after."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def peer_by_name(name: str) -> PeerSpec:
    for peer in PEERS:
        if peer.name == name:
            return peer
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")


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
