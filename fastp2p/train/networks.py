"""The one builder of pix2pix's networks: fastp2p's modules (or, for comparison, the reference
implementation's) from a ``NetworkConfig``; the command line's options map onto one.

The training and test commands build from their options (``generator_from_options``) after
checking that the options fit the images (fastp2p.train.image_sizes) and the memory
(``check_networks_fit_memory``); the benchmark peers (fastp2p.bench.networks) build both module
families from the same config.
"""
import os
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch

import fastp2p
from fastp2p import cgroups, reference
from fastp2p.byte_sizes import binary_size
from fastp2p.train.image_sizes import discriminator_layers
from fastp2p.train.memory_errors import first_line, is_out_of_memory
from fastp2p.train.unet_names import unet_levels

DISCRIMINATORS = ("patch", "pixel")


@dataclass(frozen=True)
class NetworkConfig:
    """pix2pix's defaults: U-Net-256 (batch norm, dropout), 70x70 PatchGAN, 256x256 RGB pairs.

    ``image_size``: the square size the networks will see (checked against the U-Net depth), or
    None when it is not fixed here (the command line checks its data itself).
    """

    image_size: Optional[int] = 256
    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    n_layers: int = 3
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    use_dropout: bool = True
    discriminator: str = "patch"     # "patch" (PatchGAN, n_layers) | "pixel" (1x1 PixelGAN)

    def __post_init__(self):
        if self.image_size is not None and self.image_size % (2 ** self.num_downs):
            raise ValueError(f"image_size {self.image_size} must be a multiple of "
                             f"2**num_downs = {2 ** self.num_downs}")
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(f"discriminator must be one of {DISCRIMINATORS}, got "
                             f"{self.discriminator!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}, U-Net num_downs={self.num_downs} "
                f"(ngf {self.ngf}, {self.norm} norm{', dropout' if self.use_dropout else ''}) + "
                f"PatchGAN n_layers={self.n_layers} (ndf {self.ndf})")


def build_generator(config: NetworkConfig, *, fast: bool = True) -> torch.nn.Module:
    """fastp2p.UNet (``fast``) or the reference UnetGenerator, not yet initialised."""
    if fast:
        return fastp2p.UNet(config.input_nc, config.output_nc, config.num_downs, ngf=config.ngf,
                            norm=config.norm, use_dropout=config.use_dropout)
    return reference.UnetGenerator(config.input_nc, config.output_nc, config.num_downs,
                                   config.ngf, reference.get_norm_layer(config.norm),
                                   config.use_dropout)


def build_discriminator(config: NetworkConfig, *, fast: bool = True) -> torch.nn.Module:
    """The PatchGAN (or PixelGAN) on (A, B) pairs: input_nc + output_nc channels."""
    channels = config.input_nc + config.output_nc
    if config.discriminator == "pixel":
        if fast:
            return fastp2p.PixelDiscriminator(channels, ndf=config.ndf, norm=config.norm)
        return reference.PixelDiscriminator(channels, config.ndf,
                                            reference.get_norm_layer(config.norm))
    if fast:
        return fastp2p.PatchDiscriminator(channels, ndf=config.ndf, n_layers=config.n_layers,
                                          norm=config.norm)
    return reference.NLayerDiscriminator(channels, config.ndf, config.n_layers,
                                         reference.get_norm_layer(config.norm))


def _module_norm(norm: str) -> str:
    # syncbatch is BatchNorm2d converted after construction (same parameters and state_dict).
    return "batch" if norm == "syncbatch" else norm


def _generator_config(args) -> NetworkConfig:
    return NetworkConfig(image_size=None, num_downs=unet_levels(args.netG), ngf=args.ngf,
                         input_nc=args.input_nc, output_nc=args.output_nc,
                         norm=_module_norm(args.norm), use_dropout=not args.no_dropout)


def _discriminator_config(args) -> NetworkConfig:
    return NetworkConfig(image_size=None, ndf=args.ndf, n_layers=discriminator_layers(args),
                         input_nc=args.input_nc, output_nc=args.output_nc,
                         norm=_module_norm(args.norm),
                         discriminator="pixel" if args.netD == "pixel" else "patch")


def check_op_settings(device: torch.device, *, inference: bool) -> None:
    """ValueError for a FASTP2P_BACKEND or FASTP2P_CONV the ops refuse on ``device`` and, for
    ``inference`` on the CPU (the only one that reads it), a FASTP2P_CPU_DECONV they refuse:
    before a command reads its data or writes anything. The ops read them at the first
    forward, after train had written its run folder and test had removed the page of the
    earlier results it was to replace."""
    from fastp2p.ops.backends import backend_name_for, conv_choice
    from fastp2p.ops.conv_transpose import forced_form

    backend_name_for(device)
    conv_choice.check_setting(device)
    if inference and device.type == "cpu":
        forced_form()


def generator_from_options(args, device, *, random_init: bool = True) -> torch.nn.Module:
    """fastp2p.UNet per --netG/--ngf/--norm/--no_dropout, initialised per --init_type/gain, on
    ``device``, its dropout stream at (--seed, 0) (the seed the command gave torch), however many
    U-Nets the process built before (each takes another default seed). ``random_init=False``
    skips the --init_type draw, for a caller that loads every weight next (test, whose strict
    load refuses a file that lacks any): there it was discarded, and on the meta device it
    computed nothing but imported torch._dynamo (seconds)."""
    generator = _built_on(lambda: build_generator(_generator_config(args)), args, device,
                          "the generator", "--ngf", random_init)
    generator.set_dropout_rng(torch.initial_seed())
    return generator


def discriminator_from_options(args, device) -> torch.nn.Module:
    """PatchGAN (--netD basic: 3 layers; n_layers: --n_layers_D) or PixelGAN (pixel), on
    ``device``."""
    return _built_on(lambda: build_discriminator(_discriminator_config(args)), args, device,
                     "the discriminator", "--ndf")


def _built_on(build, args, device, what: str, option: str,
              random_init: bool = True) -> torch.nn.Module:
    """``build()`` initialised (where ``random_init``) and moved to ``device``; an allocation
    that fails (which ``check_networks_fit_memory``, a lower bound, lets through) is a
    ValueError naming ``option`` (its width) in one line instead of torch's traceback."""
    try:
        network = build()
        if random_init:
            fastp2p.init_weights(network, args.init_type, args.init_gain)
        return network.to(device)
    except RuntimeError as err:  # torch.OutOfMemoryError (CUDA) is one
        if not is_out_of_memory(err):
            raise
        raise ValueError(f"{option} {getattr(args, option[2:])}: {what} does not fit in the "
                         f"memory of {device} ({first_line(err)}); lower {option}") from err


# Bytes a parameter takes at least: its float32 weight; in training also its gradient and
# Adam's two moments (activations, the batch and any cached weight copies come on top).
WEIGHT_BYTES = 4
TRAINING_BYTES = 16


def _parameters(network: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def network_parameters(args, *, discriminator: bool, generator=None) -> dict:
    """{"--ngf": the generator's parameters, "--ndf": the discriminator's (with
    ``discriminator``)}, counted on networks built on the meta device: the real architecture,
    no memory. ``generator``: the generator of ``args`` where the caller built it already (test
    builds it on the meta device to check the file against): counted, not built again."""
    with torch.device("meta"):
        if generator is None:
            generator = build_generator(_generator_config(args))
        counts = {"--ngf": _parameters(generator)}
        if discriminator:
            counts["--ndf"] = _parameters(build_discriminator(_discriminator_config(args)))
    return counts


def cgroup_memory_limit_files(proc_cgroup=None, mount=None) -> list:
    """The files holding a memory limit of this process's control group and of each group
    above it (``cgroups.group_folders``): cgroup v2's ``memory.max``, v1's
    ``memory/memory.limit_in_bytes``."""
    return [folder / ("memory.max" if is_v2 else "memory.limit_in_bytes")
            for folder, is_v2 in cgroups.group_folders("memory", proc_cgroup, mount)]


def cgroup_memory_limit(files=None) -> int | None:
    """The lowest memory limit, in bytes, of those ``files`` set (by default
    ``cgroup_memory_limit_files()``); None where none does: no such file, an unreadable one,
    or v2's "max" (no limit; v1 writes a number near 2**63 instead, larger than any memory)."""
    limits = []
    for path in cgroup_memory_limit_files() if files is None else files:
        text = cgroups.read_text(path)
        if text is not None and text.isdigit() and int(text) > 0:
            limits.append(int(text))
    return min(limits, default=None)


def memory_of(device: torch.device, cgroup_files=None) -> tuple[int, str] | None:
    """(bytes, what they are) of the memory ``device`` computes in: a GPU's total memory, or
    this machine's physical memory or, where lower, the memory limit of this process's control
    group (a container's: ``cgroup_memory_limit(cgroup_files)``); None where neither is
    known."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return total, f"{device}'s total memory"
    known = []
    try:
        known.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                      "this machine's physical memory"))
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        pass
    limit = cgroup_memory_limit(cgroup_files)
    if limit is not None:
        known.append((limit, "the memory limit of this process's cgroup"))
    return min(known, default=None)


def check_networks_fit_memory(args, device: torch.device, *, training: bool,
                              generator=None) -> None:
    """ValueError naming --ngf (and --ndf) and the estimate when the networks' parameters alone
    cannot fit, checked before anything is allocated (a large --ngf ended in torch's
    allocation traceback, or, where the memory was granted lazily, with the kernel's
    out-of-memory killer): ``WEIGHT_BYTES`` a parameter for the generator alone,
    ``TRAINING_BYTES`` for both networks in ``training``, more than ``memory_of(device)``; on
    the CPU, times the processes of a torchrun job on this machine, which train side by side.
    On a GPU, each network is built in the machine's memory first, so the larger one's weights
    must also fit there. A lower bound: a run that passes may still run out of memory
    (``_built_on`` then says so in one line; in a step, torch's error does). ``generator``: as
    ``network_parameters`` takes it."""
    from fastp2p.train.cpu_threads import local_processes

    counts = network_parameters(args, discriminator=training, generator=generator)
    parameters = sum(counts.values())
    options = " ".join(f"{option} {getattr(args, option[2:])}" for option in counts)
    advice = f"lower {max(counts, key=counts.get)}"
    processes = 1 if device.type == "cuda" else local_processes()
    need = parameters * (TRAINING_BYTES if training else WEIGHT_BYTES) * processes
    whose = "the networks'" if training else "the generator's"
    held = "float32 weights, gradients and Adam moments" if training else "float32 weights"
    shared = f", times {processes} processes of this torchrun job" if processes > 1 else ""
    _refuse_beyond(device, need, f"{options}: {whose} {parameters:,} parameters need at least "
                                 f"{binary_size(need)} for their {held} alone{shared}", advice)
    if device.type == "cuda":
        larger = max(counts.values())
        _refuse_beyond(torch.device("cpu"), larger * WEIGHT_BYTES,
                       f"{options}: the larger network's {larger:,} parameters need at least "
                       f"{binary_size(larger * WEIGHT_BYTES)} for their float32 weights, made "
                       "in this machine's memory before they move to the GPU", advice)


def _refuse_beyond(device: torch.device, need: int, what: str, advice: str) -> None:
    memory = memory_of(device)
    if memory is not None and need > memory[0]:
        raise ValueError(f"{what}, more than {memory[1]} ({binary_size(memory[0])}); {advice}")


class SavedNetwork(NamedTuple):
    """What a network file holds, read off its keys and shapes (``options_saved_in``)."""
    which: str    # "G" or "D", as NETWORK_SUFFIXES names the files
    kind: str     # "U-Net generator", "PatchGAN discriminator" or "PixelGAN discriminator"
    options: str  # the command-line model options that build it


def options_saved_in(state_dict: dict) -> SavedNetwork | None:
    """The network ``state_dict`` was saved from (a U-Net, PatchGAN or PixelGAN, as
    ``fastp2p.nn.checkpoint.network_in_file`` reads it) and the command-line model options that
    build it, or None for none of them."""
    from fastp2p.nn.checkpoint import network_in_file

    saved = network_in_file(state_dict)
    if saved is None:
        return None
    config = saved.config
    if saved.class_name == "UNet":
        return SavedNetwork("G", saved.kind,
                            f"--netG unet_{2 ** config['num_downs']} --ngf {config['ngf']} "
                            f"--norm {config['norm']} --input_nc {config['input_nc']} "
                            f"--output_nc {config['output_nc']}")
    if saved.class_name == "PixelDiscriminator":
        netD = "--netD pixel"
    elif config["n_layers"] == 3:
        netD = "--netD basic"
    else:
        netD = f"--netD n_layers --n_layers_D {config['n_layers']}"
    return SavedNetwork("D", saved.kind,
                        f"{netD} --ndf {config['ndf']} --norm {config['norm']} (and "
                        f"input_nc + output_nc = {config['input_nc']})")
