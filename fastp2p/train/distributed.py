"""torchrun support: process group, device per process, DDP wrapping, SyncBatchNorm.

``torchrun --nproc_per_node=N -m fastp2p train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; then
each process trains on its shard of every batch (the data loader shards by rank), gradients are
averaged by DistributedDataParallel (NCCL on GPUs, gloo on CPUs), the losses the training loop
reads are averaged over the ranks (``average_over_processes``), so every per-epoch decision
made from them is the same on every rank, and rank 0 alone writes files.
"""
import gc
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fastp2p.nn.network_state import dropout_rng_modules
from fastp2p.torchrun_variables import launched_local_rank, launched_world_size


@dataclass
class ProcessInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


def init_processes(device_name: str) -> ProcessInfo:
    """Join the torchrun job if there is one (WORLD_SIZE > 1), else a single process."""
    world_size = launched_world_size()
    device = resolve_device(device_name, launched_local_rank())
    if world_size == 1:
        return ProcessInfo(0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ProcessInfo(dist.get_rank(), dist.get_world_size(), device)


def wrap_for_data_parallel(net: torch.nn.Module, info: ProcessInfo,
                           sync_batchnorm: bool, channels_last: bool = False) -> torch.nn.Module:
    """DDP-wrap ``net`` in a multi-process job (SyncBatchNorm first if asked; converted to
    channels-last first if asked); else unchanged."""
    if info.world_size == 1:
        return net
    if channels_last:   # DDP's gradient buckets keep the strides the weights have when wrapped
        net.to(memory_format=torch.channels_last)
    if sync_batchnorm:
        if info.device.type != "cuda":
            raise ValueError("--norm syncbatch needs CUDA devices (PyTorch's SyncBatchNorm has "
                             "no CPU implementation); use --norm batch or instance on CPU")
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    _give_each_rank_its_dropout_stream(net, info.rank)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=device_ids)


def _give_each_rank_its_dropout_stream(net: torch.nn.Module, rank: int) -> None:
    """fastp2p's fused dropout draws from a counter buffer (``dropout_rng``: [seed, offset]).
    DDP broadcasts rank 0's buffers before every forward, which would hand all ranks the same
    masks; so each rank's seed is shifted by its rank (the seed is hashed before use, so nearby
    seeds give unrelated streams) and DDP is told to leave those buffers alone. A training
    state keeps the seeds without the shift (``dropout_seed_shift``), and a resume shifts them
    again by the resuming rank (``Pix2PixEngine.load_state_dict``)."""
    streams = dropout_rng_modules(net)
    with torch.no_grad():
        for module in streams.values():
            module.dropout_rng[0] = (module.dropout_rng[0] + rank) & 0xFFFFFFFF
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        net, [f"{name}.dropout_rng" if name else "dropout_rng" for name in streams])


def dropout_seed_shift(net: torch.nn.Module) -> int:
    """How far ``wrap_for_data_parallel`` shifted the dropout seeds of ``net``: its rank when it
    is DDP-wrapped, else 0."""
    if isinstance(net, DistributedDataParallel):
        return dist.get_rank(net.process_group)
    return 0


def average_over_processes(values: list, device: torch.device) -> list:
    """The mean of each of ``values`` (floats) over the job's processes (one all-reduce, in
    float64 on ``device``: NCCL reduces only GPU tensors); ``values`` as they are in a single
    process. Every process must call it at the same point."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    summed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return (summed / dist.get_world_size()).tolist()


# What a collective raises when another process of the job has ended (gloo's TCP transport,
# NCCL's ncclRemoteError): a peer's exit, not a fault of this process. Matched on these words
# only, so that every other RuntimeError of a collective stays a traceback.
_PEER_ENDED_WORDS = ("Connection closed by peer", "Connection reset by peer",
                     "remote process exited or there was a network error")


def is_peer_process_end(err: BaseException) -> bool:
    """Whether ``err`` is a collective's report (gloo or NCCL) that another process of the
    torchrun job ended: the reason is that process's to say, in its own message."""
    return isinstance(err, RuntimeError) and any(words in str(err)
                                                 for words in _PEER_ENDED_WORDS)


def from_main_process(value: int, info: ProcessInfo) -> int:
    """Rank 0's ``value`` on every rank (one broadcast; every process must call it at the same
    point); ``value`` itself in a single process."""
    if info.world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=info.device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def shutdown_processes(info: ProcessInfo) -> None:
    """Destroy the process group once the caller has dropped its DDP modules.

    A DDP reducer freed after destroy_process_group owns the group's last reference, and its
    destructor joins gloo's worker thread with the GIL held: a deadlock when that thread needs
    the GIL to free its last work item (a 2-process test hung so in CI, 2026-12-01). Collecting
    the dropped modules here frees the reducers while the group is still registered."""
    if info.world_size > 1 and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
