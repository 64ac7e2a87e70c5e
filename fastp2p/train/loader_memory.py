"""Whether a pack's ``PackedDeviceLoader`` fits this machine's memory, checked by ``fastp2p
train`` before the loader allocates anything. Here, not in ``fastp2p.data``, because the
machine's memory figure (``networks.memory_of``: physical memory or a cgroup limit) is the
training layer's, as the networks' own check is."""
import torch

from fastp2p.byte_sizes import binary_size
from fastp2p.data import packed_loader
from fastp2p.train import networks


def check_loader_fits_memory(dataset, batch_size: int, *, device, readers: int | None,
                             dtype: torch.dtype = torch.float32, processes: int = 1) -> None:
    """ValueError naming the pack's pair size (its index's load_size), --batch_size and the
    estimate when ``loader_host_bytes`` for the ``PackedDeviceLoader(dataset, batch_size,
    readers=readers, device=device)`` of each of ``processes`` (a torchrun job's processes on
    this machine, which read side by side) is more than this machine's memory
    (``networks.memory_of("cpu")``: physical memory or a lower cgroup limit), checked before
    any buffer is allocated: the index alone chooses the pair size (load_size up to 32768,
    6 GiB a pair), and a large pack on a small machine was killed for memory without a word.
    A lower bound: a run that passes may still run out of memory (the networks, the step)."""
    readers = packed_loader.default_readers() if readers is None else readers
    buffers = readers + 2       # PackedDeviceLoader's default
    need = processes * packed_loader.loader_host_bytes(
        dataset.shape, batch_size, dataset.config.crop_size, buffers=buffers, device=device,
        dtype=dtype)
    memory = networks.memory_of(torch.device("cpu"))
    if memory is None or need <= memory[0]:
        return
    height, double_width, channels = dataset.shape
    pair = height * double_width * channels
    shared = f", times {processes} processes of this torchrun job" if processes > 1 else ""
    raise ValueError(
        f"{dataset.phase_dir}: packed at load_size {dataset.index['load_size']} "
        f"({height}x{double_width}x{channels} pairs, {binary_size(pair)} each), --batch_size "
        f"{batch_size}: the packed loader's {buffers} batches read ahead need at least "
        f"{binary_size(need)} of host memory{shared}, more than {memory[1]} "
        f"({binary_size(memory[0])}); lower --batch_size, or repack at a smaller --load_size")
