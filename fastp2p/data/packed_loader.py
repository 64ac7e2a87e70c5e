"""Batches of a packed dataset, cropped, flipped and normalized on the device.

Threads of the training process read each batch's uint8 pairs from the shards (positioned
reads) into one of a few reused (pinned, on CUDA) host buffers; on CUDA the training thread
copies the buffer to the device asynchronously and runs ``gpu_augment`` there, on the CPU the
reader thread runs the augmentation too, so batches are made on every core the process may
use. No worker processes: the uint8 batches are large (31 MB for 64 pairs of 286x572x3), and
passing them between processes costs more than reading them (see benchmarks/bench_data.py).

Up to ``buffers`` batches are read ahead (a bounded queue: the host memory is ``buffers``
batches), so a pause of the training thread (a checkpoint save, a sample) finds that many
batches ready when it ends.

Order and augmentation follow ``create_dataloader`` exactly: a ``DistributedSampler`` order per
(seed, epoch) and rank, and each pair's crop and flip drawn from the CPU loader's ``item_rng``,
so for the same seed the batches equal the CPU loader's.
"""
import collections
import itertools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import BatchSampler, DistributedSampler

from fastp2p import cpu_info
from fastp2p.data.gpu_augment import augment_batch
from fastp2p.data.loader import item_rng
from fastp2p.ops.augment import augment_runs_a_kernel

MAX_READERS = 8     # past this, more threads only add pinned memory: one reads ~10k pairs/s


def default_readers() -> int:
    """Reader threads: one per CPU this process may use (``cpu_info.usable_cpus``), at most
    MAX_READERS."""
    return max(1, min(cpu_info.usable_cpus(), MAX_READERS))


def augments_in_reader(device) -> bool:
    """Whether the reader threads augment too (a CPU run without the Triton kernel): then each
    batch read ahead also holds its float A and B in this machine's memory."""
    device = torch.device(device)
    return device.type == "cpu" and not augment_runs_a_kernel(device)


def loader_host_bytes(pair_shape, batch_size: int, crop_size: int, *, buffers: int, device,
                      dtype: torch.dtype = torch.float32) -> int:
    """Bytes of this machine's memory a ``PackedDeviceLoader`` holds at least: its ``buffers``
    uint8 batches of ``batch_size`` pairs of ``pair_shape`` (H, 2W, 3), and where the readers
    augment (``augments_in_reader``) the float32 A and B crops of each batch read ahead and of
    the one the training thread holds (``buffers`` + 1), plus their ``dtype`` copies where
    ``dtype`` is not float32; elsewhere the augmentation runs on ``device``, one batch at a
    time (on the CPU through the Triton interpreter: one such batch counted)."""
    height, double_width, channels = pair_shape
    pairs = buffers * batch_size * height * double_width * channels
    crops = 2 * batch_size * crop_size * crop_size * channels
    per_batch = crops * 4 + (crops * dtype.itemsize if dtype != torch.float32 else 0)
    device = torch.device(device)
    if augments_in_reader(device):
        return pairs + (buffers + 1) * per_batch
    return pairs + (per_batch if device.type == "cpu" else 0)


class PackedDeviceLoader:
    """Iterable of ``{"A", "B", "A_paths", "B_paths"}`` batches on ``device``; ``set_epoch``.

    ``readers``: reader threads (default ``default_readers()``); ``buffers``: batches read
    ahead, each one host buffer (default readers + 2: every reader busy while the training
    thread holds one batch and the next is ready). ``seed`` as ``create_dataloader``'s
    (fastp2p.data.loader: the order keeps its low 32 bits).
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int, device,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, buffers: int | None = None,
                 readers: int | None = None):
        readers = default_readers() if readers is None else readers
        buffers = readers + 2 if buffers is None else buffers
        if batch_size < 1 or buffers < 2 or readers < 1:
            raise ValueError(f"batch_size and readers must be >= 1 and buffers >= 2, got "
                             f"{batch_size}, {readers}, {buffers}")
        if not hasattr(dataset, "read_batch"):
            raise ValueError("PackedDeviceLoader reads a PackedDataset (a folder written by "
                             "`fastp2p pack`); use create_dataloader for image folders")
        self.dataset = dataset
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self.buffers = buffers
        self.readers = readers
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)
        self.batches = BatchSampler(self.sampler, batch_size, drop_last)
        self._host = {}     # batch size -> list of reusable host buffers
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """As ``PairLoader.set_epoch``: ``start_batch`` skips the epoch's first batches unread."""
        self.sampler.set_epoch(epoch)
        self.start_batch = start_batch

    def close(self) -> None:
        """Nothing to stop (as ``PairLoader.close``): the reader threads end with each epoch's
        iteration."""

    def __len__(self) -> int:
        return len(self.batches)

    def _host_buffers(self, size: int) -> list:
        if size not in self._host:
            pin = self.device.type == "cuda"
            self._host[size] = [torch.empty((size, *self.dataset.shape), dtype=torch.uint8,
                                            pin_memory=pin) for _ in range(self.buffers)]
        return self._host[size]

    def _batch_paths(self, indices) -> dict:
        paths = [self.dataset.source_paths(i) for i in indices]
        if self.dataset.swap:
            paths = [(b, a) for a, b in paths]
        return {"A_paths": [a for a, _ in paths], "B_paths": [b for _, b in paths]}

    def _augment(self, pairs, rngs) -> dict:
        return augment_batch(pairs, self.dataset.config, rngs, swap=self.dataset.swap,
                             dtype=self.dtype, phase_dir=self.dataset.phase_dir,
                             index=self.dataset.index)

    def __iter__(self):
        epoch = self.sampler.epoch
        cuda = self.device.type == "cuda"
        # nothing to copy on the CPU: augment in the reader thread (the PyTorch gather; the
        # Triton interpreter, TRITON_INTERPRET=1, is not thread-safe and stays on this one)
        in_reader = augments_in_reader(self.device)
        # a slot is reused once its batch is consumed; on CUDA only after the asynchronous
        # device copy that reads it, whose event the reader waits for before refilling
        copied = [None] * self.buffers
        free = list(range(self.buffers))
        batches = itertools.islice(self.batches, self.start_batch, None)

        def read(slot, host, indices):
            if copied[slot] is not None:
                copied[slot].synchronize()
            pairs = self.dataset.read_batch(indices, out=host)
            # the per-pair generators and names too: Python work kept off the training thread
            rngs = [item_rng(self.seed, epoch, i) for i in indices]
            made = self._augment(pairs, rngs) if in_reader else (pairs, rngs)
            return slot, made, self._batch_paths(indices)

        with ThreadPoolExecutor(self.readers, thread_name_prefix="fastp2p-packed-reader") as pool:
            pending = collections.deque()

            def read_next() -> None:
                indices = next(batches, None)
                if indices is not None:
                    slot = free.pop()
                    host = self._host_buffers(len(indices))[slot]
                    pending.append(pool.submit(read, slot, host, indices))

            try:
                for _ in range(self.buffers):
                    read_next()
                while pending:
                    slot, made, paths = pending.popleft().result()   # re-raises a reader's error
                    if in_reader:
                        batch = made
                    else:
                        pairs, rngs = made
                        pairs = pairs.to(self.device, non_blocking=True)
                        if cuda:
                            copied[slot] = torch.cuda.Event()
                            copied[slot].record()
                        batch = self._augment(pairs, rngs)
                    free.append(slot)
                    read_next()
                    yield {**batch, **paths}
            finally:
                for future in pending:      # an abandoned epoch: read no further
                    future.cancel()
