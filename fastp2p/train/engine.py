"""The pix2pix training step (DESIGN.md §4), eager or captured whole as one CUDA graph.

One step is the reference implementation's ``optimize_parameters``: fake_B = G(A); the
discriminator step on (A, fake_B.detach()) and (A, B) with 0.5 * (L_fake + L_real); then, with
D frozen, the generator step on L_GAN(D(A, fake_B), real) + lambda * L1(fake_B, B). The same
Python body runs in every mode; the modes change only how it executes:

- eager on a CPU (fp32): plain ``torch.optim.Adam`` and float lr - the yardstick;
- on CUDA: fused capturable Adam with the lr in a device tensor, fastp2p's fused L1, D's input
  pairs concatenated in bf16 under bf16 autocast, losses summed on the device and
  read only by ``read_losses`` (the one call that syncs), optional bf16 autocast (no GradScaler:
  bf16 has fp32's range) and channels-last weights and activations;
- ``master_weights=True`` (off by default until a GPU run shows it faster; issue 17): one
  ``MasterWeightsAdam`` per network keeps float32 masters and writes the bf16 weights the
  autocast step computes with, so no per-step weight or gradient casts remain;
- ``fused_step_losses=True`` (off by default until a GPU run shows it faster; issue 17): each
  network step's losses and their gradients come from one fused op
  (``fastp2p.ops.step_losses``: on Triton one launch plus one finishing launch), which also
  adds the losses to the device sums and records a non-finite step; the gradients are
  back-propagated directly (``torch.autograd.backward``), so the loss arithmetic, its
  backward and the stack / add / isfinite bookkeeping launches all go. Device tensors only,
  so it is captured with the rest of the step;
- ``side_streams=True`` (CUDA; off by default until a GPU run shows it faster; issue 17): D's
  work on the real pair (its forward, the D_real loss and, through autograd, its share of D's
  backward) runs on a second CUDA stream, forked and joined with events inside the step, so a
  captured step holds both streams in its one graph. The side stream starts at the top of the
  step when D keeps no buffer and draws no random numbers, and after D's forward on the fake
  pair otherwise (BatchNorm's running statistics are updated fake pair first); meanwhile the
  main stream computes the D_fake loss and the G step's L1 term (it needs only fake_B and
  real_B). Every update stays the serial step's bit for bit (``fastp2p.train.step_streams``
  says why), except that an eager bf16 step casts D's weights once per pass instead of once for
  both, as the captured step does. Not with DistributedDataParallel;
- ``optimizer_overlap=True`` (CUDA, with ``master_weights=True``; off by default until a GPU
  run shows it faster; issue 17): each network's ``MasterWeightsAdam`` is laid out in a few
  buckets of layers, and a bucket is updated on a side stream as soon as the backward has
  finished its gradients, beside the rest of that backward; the step waits for the updates
  where the serial step ran the optimizer (before the G step's D forward for D). Same updates
  bit for bit, up to ``optimizer_overlap.BUCKETS`` (4) Adam launches per network instead of
  one; the reasoning is in ``fastp2p.train.optimizer_overlap``. Not with DistributedDataParallel;
- ``split_conv_backward=True`` (CUDA; off by default until a GPU run shows it faster; issue 17):
  in the step's backward, each module convolution whose input and weight both want a gradient
  computes its weight and bias gradients on a side stream beside its data gradient on the
  current stream, forked and joined with events inside the node (one wgrad stream per stream
  the networks run on: ``fastp2p.train.wgrad_streams``). Same kernels, same updates bit for bit,
  except that an eager bf16 step casts a weight used twice (D on both pairs) once per use, as
  the captured step does (``fastp2p.ops.split_conv_backward`` says why). Layers given to the
  fused convolution, inference and forwards outside the step are unchanged. Not with
  DistributedDataParallel;
- ``cuda_graph=True``: inputs are copied into static buffers; the first ``WARMUP_STEPS`` steps run
  eagerly on a side stream (real updates, as PyTorch's whole-network capture recipe requires),
  the next one is captured with ``torch.cuda.graph`` and replayed, and every later step is a
  replay. BatchNorm running statistics, dropout RNG, Adam's step counters and the loss sums all
  live in device tensors, so they advance inside the graph.
"""
import contextlib
import math
import numbers

import torch
from torch.nn.parallel import DistributedDataParallel

from fastp2p.nn.cuda_graphs import capture_graph, run_on_side_stream
from fastp2p.nn.losses import GANLoss
from fastp2p.nn.network_state import dropout_rng_modules, set_requires_grad
from fastp2p.ops import split_conv_backward as split_conv
from fastp2p.ops.losses import l1_loss_for
from fastp2p.ops.step_losses import (LossTally, d_step_losses_and_grads,
                                     g_step_losses_and_grads)
from fastp2p.train import optimizer_overlap as overlap
from fastp2p.train.distributed import dropout_seed_shift
from fastp2p.train.engine_state import ENGINE_COUNTERS, check_engine_state, dropout_stream_owner
from fastp2p.train.finite import first_nonfinite, training_tensors
from fastp2p.train.step_streams import SideStream, StepStreams, real_pair_may_start_first
from fastp2p.train.wgrad_streams import WgradSideStreams

PRECISIONS = ("fp32", "bf16")
LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")
WARMUP_STEPS = 3  # eager side-stream steps before capture: lets cuDNN and the allocator settle


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return net.module if isinstance(net, DistributedDataParallel) else net


def _one_value(value):
    """The number in a one-value tensor (torch's optimizers take a tensor lr, and the engine
    keeps ``float()`` of it), so that it is checked as that number; ``value`` otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def _check_number(name: str, value, low: float, high: float, expected: str) -> None:
    """A ValueError naming ``name`` unless ``value`` is a number in [low, high), or a one-value
    tensor of one: a string (from a config file or a widget), None or a bool (a bool tensor
    too) is refused by its type first, as comparing it raised a TypeError that named no
    option."""
    number = _one_value(value)
    is_number = isinstance(number, numbers.Real) and not isinstance(number, bool)
    if not (is_number and low <= number < high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_lr(lr) -> None:
    """The engine's learning rates, at construction and in ``set_lr``: what fastp2p train's
    --lr takes (a finite number >= 0)."""
    _check_number("lr", lr, 0, math.inf, "a finite number >= 0")


def _check_cuda_options(device: torch.device, given: dict) -> None:
    """One ValueError naming every CUDA-only setting in ``given`` (name: (value, value off
    CUDA)) where the networks are not on a CUDA device, so a caller fixes them in one round."""
    if device.type == "cuda":
        return
    wrong = [(name, value, fix) for name, (value, fix) in given.items() if value != fix]
    if wrong:
        asked = " and ".join(f"{name}={value!r}" for name, value, _ in wrong)
        fixes = " and ".join(f"{name}={fix!r}" for name, _, fix in wrong)
        raise ValueError(f"{asked} need{'s' if len(wrong) == 1 else ''} the networks on a "
                         f"CUDA device, they are on {device}; use {fixes}")


def _input_channels(net: torch.nn.Module):
    """The input_nc a fastp2p network was built with; None for any other module (whose first
    layer the engine cannot tell from the order of its modules)."""
    config = getattr(unwrap(net), "config", None)
    return config().get("input_nc") if callable(config) else None


def _check_single_process(option: str, off_hint: str, *nets: torch.nn.Module) -> None:
    """A one-line ValueError where ``option=True`` cannot run: it needs one process
    (DistributedDataParallel's gradient hooks cannot be captured or forked)."""
    if any(isinstance(net, DistributedDataParallel) for net in nets):
        raise ValueError(f"{option}=True is not supported with DistributedDataParallel; "
                         f"use {option}=False{off_hint} for multi-process training")


def _check_wrapped_channels_last(*nets: torch.nn.Module) -> None:
    """A one-line ValueError for channels_last=True with a DistributedDataParallel network whose
    convolution weights are not channels-last yet: DDP's gradient buckets keep the strides the
    weights had when it wrapped them, so converting them here would copy every gradient across
    layouts into its bucket at every step ("Grad strides do not match bucket view strides")."""
    for net in nets:
        if isinstance(net, DistributedDataParallel) and any(
                p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last)
                for p in net.parameters()):
            raise ValueError("channels_last=True: convert the networks with "
                             ".to(memory_format=torch.channels_last) before wrapping them in "
                             "DistributedDataParallel (its gradient buckets keep the layout "
                             "the weights had then)")


class Pix2PixEngine:
    """Owns the optimizers and runs pix2pix updates of ``netG`` and ``netD``.

    ``netG`` / ``netD`` may be wrapped in DistributedDataParallel; the generator step then calls
    the frozen discriminator unwrapped, because its gradients are not wanted (and DDP would wait
    for them). ``step`` never syncs with the host; ``read_losses`` does.
    """

    def __init__(self, netG, netD, *, gan_mode="vanilla", lambda_L1=100.0, lr=2e-4, beta1=0.5,
                 precision="fp32", channels_last=False, cuda_graph=False, master_weights=False,
                 fused_step_losses=False, side_streams=False, optimizer_overlap=False,
                 split_conv_backward=False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        _check_lr(lr)
        _check_number("beta1", beta1, 0.0, 1.0, "in [0, 1)")
        # as fastp2p train's --lambda_L1
        _check_number("lambda_L1", lambda_L1, 0.0, math.inf, "a finite number >= 0")
        params_G = list(netG.parameters())
        if not params_G or not list(netD.parameters()):
            raise ValueError("netG and netD must both have parameters")
        self.device = params_G[0].device
        is_cuda = self.device.type == "cuda"
        # optimizer_overlap and master_weights check their devices themselves (below)
        _check_cuda_options(self.device, {
            "precision": (precision, "fp32"), "cuda_graph": (cuda_graph, False),
            "side_streams": (side_streams, False),
            "split_conv_backward": (split_conv_backward, False)})
        for option, on, off_hint in (("cuda_graph", cuda_graph, " (--no-graphs)"),
                                     ("side_streams", side_streams, ""),
                                     ("split_conv_backward", split_conv_backward, "")):
            if on:
                _check_single_process(option, off_hint, netG, netD)
        if channels_last:
            _check_wrapped_channels_last(netG, netD)
        if optimizer_overlap:  # before master_weights' own checks: it names both options
            overlap_streams = overlap.overlap_streams(self.device, master_weights, netG, netD)
        if master_weights:
            from fastp2p.train.master_weights_checks import check_master_weights_device
            check_master_weights_device(self.device, netG, netD)
        self.netG, self.netD = netG, netD
        self._input_channels = (_input_channels(netG), _input_channels(netD))
        self.gan_mode, self.lambda_L1 = gan_mode, float(lambda_L1)
        self.precision, self.channels_last, self.cuda_graph = precision, channels_last, cuda_graph
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            netG.to(memory_format=torch.channels_last)
            netD.to(memory_format=torch.channels_last)
        self.criterionGAN = GANLoss(gan_mode).to(self.device)
        # fastp2p.ops decides (float32 either way, as autocast runs F.l1_loss)
        self._l1_loss = l1_loss_for(self.device)

        # On CUDA the lr is a device tensor shared by both optimizers: set_lr writes into it,
        # so a captured graph sees the new value without re-capture.
        self._lr_value = float(lr)
        if is_cuda or master_weights:
            self._lr = torch.tensor(self._lr_value, dtype=torch.float32, device=self.device)
            adam_options = {"lr": self._lr, "fused": True, "capturable": True}
        else:
            self._lr = None
            adam_options = {"lr": self._lr_value}
        self._beta1 = float(beta1)
        betas = (self._beta1, 0.999)
        if master_weights:
            from fastp2p.train.master_weights_adam import MasterWeightsAdam
            copy_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            buckets = overlap.BUCKETS if optimizer_overlap else 1
            self.optimizer_G, self.optimizer_D = (
                MasterWeightsAdam(net, lr=self._lr, betas=betas, copy_dtype=copy_dtype,
                                  buckets=buckets) for net in (netG, netD))
        else:
            self.optimizer_G = torch.optim.Adam(netG.parameters(), betas=betas, **adam_options)
            self.optimizer_D = torch.optim.Adam(netD.parameters(), betas=betas, **adam_options)

        # What the step body zeroes and steps per network: its optimizer, or with
        # optimizer_overlap the optimizer's buckets updated during the backward.
        self._updates = {"G": self.optimizer_G, "D": self.optimizer_D}
        if optimizer_overlap:
            self._updates = {name: overlap.OverlappedUpdates(optimizer, overlap_streams)
                             for name, optimizer in self._updates.items()}
        self._loss_sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float32, device=self.device)
        self._device_step = torch.zeros((), dtype=torch.int64, device=self.device)
        # 1-based number of the first step whose losses were not finite; 0 while all were.
        self._first_nonfinite_step = torch.zeros((), dtype=torch.int64, device=self.device)
        self.fused_step_losses = bool(fused_step_losses)
        # Where the fused ops add their parts: (D_fake, D_real) in the D step, (G_GAN, G_L1)
        # in the G step, which also ends the step (device_step += 1).
        self._tallies = {
            net: LossTally(self._loss_sums, tuple(LOSS_NAMES.index(n) for n in names),
                           self._device_step, self._first_nonfinite_step, advance_step=net == "G")
            for net, names in (("D", ("D_fake", "D_real")), ("G", ("G_GAN", "G_L1")))}
        # Where D's real-pair work runs: None on the current stream, in the serial order.
        self._streams: StepStreams | None = SideStream(self.device) if side_streams else None
        # Where the convolutions' weight gradients run (split_conv_backward): None, not split.
        self._wgrad_streams: split_conv.WgradStreams | None = None
        if split_conv_backward:
            branches = (self._streams.stream,) if side_streams else ()
            self._wgrad_streams = WgradSideStreams(self.device, branches)
        self.steps = 0
        self._steps_since_read = 0
        self._reset_graph()
        # What a step writes: every parameter and buffer of both networks (see _mark_written).
        self._written_by_step = tuple(
            t for net in (unwrap(netG), unwrap(netD)) for t in (*net.parameters(), *net.buffers()))

    # ---- public API ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr_value

    @property
    def steps_since_read(self) -> int:
        """Steps whose losses ``read_losses`` has not returned yet."""
        return self._steps_since_read

    def set_lr(self, lr: float) -> None:
        """Change the learning rate of both optimizers (between steps; never syncs)."""
        _check_lr(lr)
        self._lr_value = float(lr)
        if self._lr is not None:
            self._lr.fill_(self._lr_value)
        else:
            for optimizer in (self.optimizer_G, self.optimizer_D):
                for group in optimizer.param_groups:
                    group["lr"] = self._lr_value

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        """One full pix2pix D+G update on a batch (N x C x H x W tensors in [-1, 1]) of any
        floating dtype, cast to float32 on the engine's device. A ValueError: a non-floating
        dtype; a batch that is not 4-D or is empty; real_A and real_B of different batch or
        spatial sizes; real_A's channels not netG's input_nc, or real_A's and real_B's together
        not netD's input channels; under ``cuda_graph``, a shape other than the captured one;
        with ``fused_step_losses`` or ``cuda_graph``, criterionGAN's labels changed."""
        self._check_batch(real_A, real_B)
        self._check_gan_labels()
        if self.cuda_graph:
            self._graph_step(real_A, real_B)
        else:
            real_A, real_B = self._to_device(real_A), self._to_device(real_B)
            fake_B = self._step_body(real_A, real_B)
            self._last_batch = (real_A, fake_B, real_B)
        self._mark_written()
        self.steps += 1
        self._steps_since_read += 1

    def _check_gan_labels(self) -> None:
        """fused_step_losses computes the GAN losses against labels 1 / 0, and a captured CUDA
        graph keeps the loss it was captured with: other labels written into criterionGAN's
        buffers are refused there, not ignored (wgangp has no labels). No sync unless the
        buffers changed since the last step (GANLoss.has_default_labels)."""
        if (self.gan_mode == "wgangp" or not (self.fused_step_losses or self.cuda_graph)
                or self.criterionGAN.has_default_labels()):
            return
        option = "fused_step_losses" if self.fused_step_losses else "cuda_graph"
        raise ValueError(f"criterionGAN's labels are real {self.criterionGAN.real_label.item():g}"
                         f" / fake {self.criterionGAN.fake_label.item():g}, but {option} trains "
                         f"against 1 / 0; keep the default labels or build the engine with "
                         f"{option}=False")

    def _mark_written(self) -> None:
        """Bump the version counter of every parameter and buffer the step wrote. A CUDA-graph
        replay and MasterWeightsAdam's Triton kernel write them without the counters that
        in-place torch ops bump, and the inference caches keyed on those counters (folded
        BatchNorm, packed weights: fastp2p.nn.folding; fastp2p.graphed's captures) would
        otherwise serve the weights of an earlier step to an eval-mode forward in between
        steps. One call over all of them: about 6 us per step on a CPU."""
        torch.autograd.graph.increment_version(self._written_by_step)

    def read_losses(self) -> dict:
        """Losses averaged over the steps since the last read (syncs with the device); an
        empty dict when no step has run since (no average to give: NaN would read as a
        diverged run).

        Names and scaling as the reference logs them: G_L1 includes the lambda factor.
        """
        if self._steps_since_read == 0:
            return {}
        sums = self._loss_sums.tolist()
        self._loss_sums.zero_()
        count, self._steps_since_read = self._steps_since_read, 0
        return {name: value / count for name, value in zip(LOSS_NAMES, sums)}

    def first_nonfinite_step(self) -> int:
        """1-based engine step whose losses first were NaN or Inf, 0 if none (syncs)."""
        return int(self._first_nonfinite_step.item())

    def first_nonfinite_tensor(self) -> str | None:
        """Name of the first parameter, buffer or optimizer state of G or D holding NaN or Inf,
        None if all are finite (one reduction on the device, one sync)."""
        networks = {"netG": unwrap(self.netG), "netD": unwrap(self.netD)}
        return first_nonfinite(training_tensors(
            networks, {"optimizer_G": (self.optimizer_G, networks["netG"]),
                       "optimizer_D": (self.optimizer_D, networks["netD"])}))

    def last_batch(self):
        """(real_A, fake_B, real_B) of the latest step, detached (for sample images)."""
        if self._last_batch is None:
            raise ValueError("no step has run since the engine was created or loaded")
        return tuple(t.detach() for t in self._last_batch)

    def state_dict(self) -> dict:
        """Optimizers, lr, counters and RNG states: everything a bit-exact resume needs.

        The dropout streams are kept by the unwrapped networks' module names and with the seeds
        as rank 0 has them, so a state loads under any number of processes; every rank's offset
        is rank 0's at a save (the data loader gives each rank as many images per batch, so
        each draws as many mask elements per step). Loaded, each rank goes on from that offset
        with its own seed again: with the saved --batch_size and number of processes, every
        rank draws the masks the uninterrupted run would have; with others, every rank still
        draws its own masks, rank r going on from where the saved run's rank r stopped."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "optimizer_G": self.optimizer_G.state_dict(),
            "optimizer_D": self.optimizer_D.state_dict(),
            "lr": self._lr_value,
            "steps": self.steps,
            "steps_since_read": self._steps_since_read,
            "loss_sums": self._loss_sums.cpu(),
            "device_step": self._device_step.cpu(),
            "first_nonfinite_step": self._first_nonfinite_step.cpu(),
            "rng": rng,
            "dropout_rng": self._dropout_streams(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state_dict()``; a state that does not fit this engine's optimizers,
        counters and networks' dropout streams is refused with a ValueError before anything is
        loaded (``fastp2p.train.engine_state``)."""
        owners = self._dropout_stream_owners()
        check_engine_state(state, {"optimizer_G": self.optimizer_G,
                                   "optimizer_D": self.optimizer_D},
                           {name: getattr(self, "_" + name) for name in ENGINE_COUNTERS}, owners)
        for name, optimizer in (("optimizer_G", self.optimizer_G),
                                ("optimizer_D", self.optimizer_D)):
            optimizer.load_state_dict(_with_own_device_settings(state[name], optimizer))
            if isinstance(optimizer, torch.optim.Optimizer):   # MasterWeightsAdam lays out its own
                _moments_laid_out_as_parameters(optimizer)
        if self._lr is not None:
            # load_state_dict put the saved lr tensors into the groups; share ours again.
            for optimizer in (self.optimizer_G, self.optimizer_D):
                for group in optimizer.param_groups:
                    group["lr"] = self._lr
        self.set_lr(state["lr"])
        self._use_own_beta1()
        self.steps = int(state["steps"])
        self._steps_since_read = int(state.get("steps_since_read", 0))
        for name in ENGINE_COUNTERS:
            if name in state:
                getattr(self, "_" + name).copy_(state[name])
        self.load_rng_state(state["rng"])
        for name, (seed, offset) in state.get("dropout_rng", {}).items():
            module, shift = dropout_stream_owner(owners, name)
            module.dropout_rng.copy_(torch.tensor(
                [(int(seed) + shift) & 0xFFFFFFFF, int(offset)], dtype=torch.int64))
        # Loading replaced the optimizer state tensors a captured graph would point at.
        self._reset_graph()

    def _use_own_beta1(self) -> None:
        """After loading the optimizers, this engine's beta1 again (as the lr is, by the
        schedule): the reference's --continue_train builds a fresh Adam from the command line,
        so a resume with another --beta1 uses it; Adam's moments stay the saved ones."""
        for optimizer in (self.optimizer_G, self.optimizer_D):
            for group in optimizer.param_groups:
                group["betas"] = (self._beta1, *group["betas"][1:])
            if not isinstance(optimizer, torch.optim.Optimizer):  # MasterWeightsAdam
                optimizer.hyper_parameters_changed()

    def _dropout_stream_owners(self) -> dict:
        """(module, its seed's rank shift) of ``dropout_rng_modules`` of both networks, by
        "netG.<name>" / "netD.<name>" of the unwrapped networks: their streams are not in the
        state_dicts, so the engine state keeps them."""
        return {f"{label}.{name}" if name else label: (module, dropout_seed_shift(net))
                for label, net in (("netG", self.netG), ("netD", self.netD))
                for name, module in dropout_rng_modules(unwrap(net)).items()}

    def _dropout_streams(self) -> dict:
        streams = {}
        for name, (module, shift) in self._dropout_stream_owners().items():
            seed, offset = module.dropout_rng.tolist()
            streams[name] = torch.tensor([(seed - shift) & 0xFFFFFFFF, offset],
                                         dtype=torch.int64)
        return streams

    def load_rng_state(self, rng: dict) -> None:
        """Restore the RNG states (dropout draws) saved in ``state_dict()["rng"]``."""
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    # ---- the step ---------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            # No weight-cast cache: a cached cast would be captured once and go stale.
            return torch.autocast("cuda", dtype=torch.bfloat16,
                                  cache_enabled=not self.cuda_graph)
        return contextlib.nullcontext()

    def _step_body(self, real_A, real_B):
        """``_optimize_parameters``, with split_conv_backward the networks' convolutions
        splitting their backward in it; if it raises, the overlapped updates (optimizer_overlap)
        already launched are joined before the error leaves the step."""
        try:
            with split_conv.within(self._wgrad_streams):
                return self._optimize_parameters(real_A, real_B)
        except BaseException:
            for updates in self._updates.values():
                if isinstance(updates, overlap.OverlappedUpdates):
                    updates.abandon()
            raise

    def _optimize_parameters(self, real_A, real_B):
        """The reference's optimize_parameters; every tensor it touches stays on the device."""
        # D's input pairs in the dtype its first convolution computes in: under bf16 autocast,
        # casting the halves before the concatenation gives the values that casting the float32
        # concatenation would, with a third of the bytes written.
        pair_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        pair_A, pair_B = real_A.to(pair_dtype), real_B.to(pair_dtype)

        def pair(fake_or_real_B):
            return torch.cat((pair_A, fake_or_real_B.to(pair_dtype)), 1)

        set_requires_grad(self.netD, True)
        self._updates["D"].zero_grad(set_to_none=True)
        side = self._streams is not None
        real_first = side and real_pair_may_start_first(unwrap(self.netD))
        if real_first:  # beside G's forward: D's real-pair forward changes no state
            real = self._real_pair_forward(pair, pair_B)
        with self._autocast():
            fake_B = self.netG(real_A)
        # Discriminator: fake pairs (detached from G) and real pairs.
        with self._autocast():
            logits_fake = self.netD(pair(fake_B.detach()))
            if not side:  # in the same autocast region: an eager step casts D's weights once
                real = self._real_pair_forward(pair, pair_B)
        if side and not real_first:  # after the fake pair's running-statistics updates
            real = self._real_pair_forward(pair, pair_B)
        # Main-stream work while a side stream runs the real pair: the D_fake loss and, as it
        # needs only fake_B and real_B, the G step's L1 term.
        fake = (logits_fake, *self._gan_loss_unless_fused(logits_fake, target_is_real=False))
        loss_G_L1 = None
        if side:
            if not self.fused_step_losses:
                loss_G_L1 = self._g_l1_loss(fake_B, real_B)
            self._streams.join(*real)
        losses_D = self._backward_D(fake, real)
        if side:
            self._streams.join()  # the real pair's share of D's backward ran on the side stream
        self._updates["D"].step()
        # Generator: fool the (just updated, now frozen) discriminator and stay close to B.
        set_requires_grad(self.netD, False)
        self._updates["G"].zero_grad(set_to_none=True)
        with self._autocast():
            logits_G = unwrap(self.netD)(pair(fake_B))
        losses_G = self._backward_G(logits_G, fake_B, real_B, loss_G_L1)
        self._updates["G"].step()
        if not self.fused_step_losses:  # the fused ops did this in their finishing launches
            self._tally(losses_G + losses_D)
        return fake_B.detach()

    def _real_pair_forward(self, pair, pair_B) -> tuple:
        """(logits_real, D_real loss), or (logits_real,) when the fused op computes the
        losses later: on the side stream when there is one (forked here), else on the current
        stream."""
        streams = self._streams
        if streams is not None:
            streams.fork()
        with contextlib.nullcontext() if streams is None else streams.side():
            with self._autocast():
                logits_real = self.netD(pair(pair_B))
            return (logits_real, *self._gan_loss_unless_fused(logits_real, target_is_real=True))

    def _gan_loss_unless_fused(self, logits, target_is_real: bool) -> tuple:
        """(D's GAN loss on ``logits``,), or () when the fused op computes it later."""
        if self.fused_step_losses:
            return ()
        with self._autocast():
            return (self._gan_loss(logits, target_is_real),)

    def _gan_loss(self, logits, target_is_real: bool):
        """criterionGAN's loss, float32 in every mode: vanilla and lsgan widen bf16 logits
        themselves under autocast; wgangp's mean keeps the logits' dtype (the reference's), so
        its logits are widened here, or the logged and summed losses would be bf16-rounded."""
        return self.criterionGAN(logits.float() if self.gan_mode == "wgangp" else logits,
                                 target_is_real)

    def _backward_D(self, fake: tuple, real: tuple) -> list:
        """Back-propagates 0.5 (L_fake + L_real) into D, from (logits, loss) per pair (just
        (logits,) with the fused op); returns [D_real, D_fake], or nothing when the fused op
        has tallied them."""
        if self.fused_step_losses:
            (logits_fake,), (logits_real,) = fake, real
            _, grad_fake, grad_real = d_step_losses_and_grads(
                logits_fake, logits_real, self.gan_mode, tally=self._tallies["D"])
            torch.autograd.backward((logits_fake, logits_real), (grad_fake, grad_real))
            return []
        (_, loss_D_fake), (_, loss_D_real) = fake, real
        with self._autocast():
            loss_D = (loss_D_fake + loss_D_real) * 0.5
        loss_D.backward()
        return [loss_D_real, loss_D_fake]

    def _g_l1_loss(self, fake_B, real_B):
        with self._autocast():
            return self._l1_loss(fake_B.float(), real_B) * self.lambda_L1

    def _backward_G(self, logits_G, fake_B, real_B, loss_G_L1=None) -> list:
        """Back-propagates L_GAN + lambda L1 into G; returns [G_GAN, G_L1], or nothing when the
        fused op has tallied them. ``loss_G_L1``: lambda L1, if already computed."""
        if self.fused_step_losses:
            # fake_B in its own dtype: the op computes the L1 in float32 without a copy.
            _, grad_logits, grad_fake_B = g_step_losses_and_grads(
                logits_G, fake_B, real_B, self.gan_mode, self.lambda_L1,
                tally=self._tallies["G"])
            torch.autograd.backward((logits_G, fake_B), (grad_logits, grad_fake_B))
            return []
        if loss_G_L1 is None:
            loss_G_L1 = self._g_l1_loss(fake_B, real_B)
        with self._autocast():
            loss_G_GAN = self._gan_loss(logits_G, True)
            loss_G = loss_G_GAN + loss_G_L1
        loss_G.backward()
        return [loss_G_GAN, loss_G_L1]

    def _tally(self, losses: list) -> None:
        """Adds [G_GAN, G_L1, D_real, D_fake] to the device sums and records the step if one is
        not finite (device ops only)."""
        losses = torch.stack(losses).detach().float()
        self._loss_sums.add_(losses)
        self._device_step.add_(1)
        newly_bad = (~torch.isfinite(losses).all()) & (self._first_nonfinite_step == 0)
        self._first_nonfinite_step.copy_(
            torch.where(newly_bad, self._device_step, self._first_nonfinite_step))

    def _check_batch(self, real_A, real_B):
        for name, t in (("real_A", real_A), ("real_B", real_B)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4:
                raise ValueError(f"{name} must be a floating N x C x H x W tensor, got "
                                 f"{getattr(t, 'shape', type(t).__name__)}")
            if not t.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}; "
                                 "convert it with .float(), its values scaled to [-1, 1] as "
                                 "the data loader's")
        if real_A.shape[0] != real_B.shape[0] or real_A.shape[2:] != real_B.shape[2:]:
            raise ValueError(f"real_A {tuple(real_A.shape)} and real_B {tuple(real_B.shape)} "
                             "must have the same batch size and spatial size")
        # Before any forward: a wrong channel count found inside D (after G's train-mode forward
        # moved its batch-norm statistics) was blamed on D's input_nc.
        g_in, d_in = self._input_channels
        a, b = real_A.shape[1], real_B.shape[1]
        if g_in is not None and a != g_in:
            raise ValueError(f"real_A has {a} channel(s) and netG takes {g_in} (its input_nc)")
        if d_in is not None and a + b != d_in:
            raise ValueError(f"real_B has {b} channel(s): netD takes {d_in}, real_A's {a} and "
                             f"real_B's {d_in - a} (netG's output_nc)")
        if real_A.shape[0] == 0:  # the networks return an empty output, as the reference's
            raise ValueError(f"a training step got an empty batch (shape "
                             f"{tuple(real_A.shape)}); pass at least one image")

    def _to_device(self, t):
        return t.to(self.device, dtype=torch.float32, non_blocking=True).contiguous(
            memory_format=self.memory_format)

    # ---- CUDA graph -------------------------------------------------------------------------
    def _reset_graph(self):
        self._graph = None
        self._static = None
        self._warmup_left = WARMUP_STEPS
        self._last_batch = None

    def _graph_step(self, real_A, real_B):
        if self._static is None:
            self._static = tuple(
                torch.empty(t.shape, dtype=torch.float32, device=self.device,
                            memory_format=self.memory_format) for t in (real_A, real_B))
        static_A, static_B = self._static
        if real_A.shape != static_A.shape or real_B.shape != static_B.shape:
            raise ValueError(f"a CUDA graph replays fixed shapes: captured "
                             f"{tuple(static_A.shape)} / {tuple(static_B.shape)}, got "
                             f"{tuple(real_A.shape)} / {tuple(real_B.shape)} (drop the last "
                             "partial batch, or use cuda_graph=False)")
        static_A.copy_(real_A, non_blocking=True)
        static_B.copy_(real_B, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
            return
        if self._warmup_left == 0:
            self._capture_and_replay(static_A, static_B)
            return
        fake_B = run_on_side_stream(lambda: self._step_body(static_A, static_B), self.device)
        self._warmup_left -= 1
        self._last_batch = (static_A, fake_B, static_B)

    def _capture_and_replay(self, static_A, static_B):
        # Gradients must be allocated inside the graph's pool, not accumulated into warm-up ones.
        self.optimizer_G.zero_grad(set_to_none=True)
        self.optimizer_D.zero_grad(set_to_none=True)
        graph, fake_B = capture_graph(lambda: self._step_body(static_A, static_B))
        self._graph = graph
        self._last_batch = (static_A, fake_B, static_B)
        graph.replay()  # capture only records: this replay is the step itself


# Adam's settings the engine chooses by its device (fused capturable on CUDA, plain on a CPU)
_DEVICE_ADAM_SETTINGS = ("fused", "capturable", "foreach", "differentiable")


def _with_own_device_settings(saved: dict, optimizer) -> dict:
    """``saved`` (an optimizer's state_dict) with ``optimizer``'s own device settings in its
    groups: ``load_state_dict`` takes a group's settings from the state, and --device is not
    inherited, so a CPU run's state resumed on CUDA gave the fused Adam capturable=False (a CUDA
    graph's capture then raised) and left its step counts on the CPU, and a CUDA run's state
    resumed on a CPU ran fused capturable Adam there. torch places each step as these say."""
    saved_groups = saved.get("param_groups")
    if not (isinstance(optimizer, torch.optim.Optimizer)   # MasterWeightsAdam keeps its own
            and isinstance(saved_groups, list) and len(saved_groups) == len(
                optimizer.param_groups) and all(isinstance(g, dict) for g in saved_groups)):
        return saved   # what torch's load_state_dict refuses, as it says it
    groups = [{**saved_group, **{key: group[key] for key in _DEVICE_ADAM_SETTINGS}}
              for saved_group, group in zip(saved_groups, optimizer.param_groups)]
    return {**saved, "param_groups": groups}


def _moments_laid_out_as_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Each state tensor of a parameter's shape given that parameter's strides, values kept: a
    checkpoint holds them contiguous (``host_copy``) and ``load_state_dict`` keeps that, so a
    --channels-last run's moments came back NCHW beside channels-last weights, which fused Adam
    on CUDA refuses at the first step ("... must have same dtype, device, and layout")."""
    for param, state in optimizer.state.items():
        for name, value in state.items():
            if (isinstance(value, torch.Tensor) and value.shape == param.shape
                    and value.stride() != param.stride()):
                state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
