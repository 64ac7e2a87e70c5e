"""Batches of a packed dataset, cropped, flipped and normalized on the device.

A background thread copies each batch's uint8 pairs out of the shard memory maps into one of a
few reused (pinned, on CUDA) host buffers; the training thread copies the buffer to the device
asynchronously and runs ``gpu_augment`` there. No worker processes: the uint8 batches are large
(31 MB for 64 pairs of 286x572x3), and passing them between processes costs more than reading
them (see benchmarks/bench_data.py).

Order and augmentation follow ``create_dataloader`` exactly: a ``DistributedSampler`` order per
(seed, epoch) and rank, and each pair's crop and flip drawn from the CPU loader's ``item_rng``,
so for the same seed the batches equal the CPU loader's.
"""
import itertools
import queue
import threading

import torch
from torch.utils.data import BatchSampler, DistributedSampler

from fastp2p.data.gpu_augment import augment_batch
from fastp2p.data.loader import item_rng


class PackedDeviceLoader:
    """Iterable of ``{"A", "B", "A_paths", "B_paths"}`` batches on ``device``; ``set_epoch``."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int, device,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, buffers: int = 3):
        if batch_size < 1 or buffers < 2:
            raise ValueError(f"batch_size must be >= 1 and buffers >= 2, got {batch_size}, "
                             f"{buffers}")
        if not hasattr(dataset, "read_batch"):
            raise ValueError("PackedDeviceLoader reads a PackedDataset (a folder written by "
                             "`fastp2p pack`); use create_dataloader for image folders")
        self.dataset = dataset
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self.buffers = buffers
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)
        self.batches = BatchSampler(self.sampler, batch_size, drop_last)
        self._host = {}     # batch size -> list of reusable host buffers
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """As ``PairLoader.set_epoch``: ``start_batch`` skips the epoch's first batches unread."""
        self.sampler.set_epoch(epoch)
        self.start_batch = start_batch

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

    def __iter__(self):
        epoch = self.sampler.epoch
        cuda = self.device.type == "cuda"
        filled, free = queue.Queue(), queue.Queue()
        for slot in range(self.buffers):
            free.put(slot)
        # a slot comes back to ``free`` once its batch is read; on CUDA with the event of the
        # asynchronous device copy that reads it, which the reader waits for before refilling
        copied = [None] * self.buffers
        stop = threading.Event()

        def read():
            try:
                for indices in itertools.islice(self.batches, self.start_batch, None):
                    slot = free.get()
                    if stop.is_set():
                        return
                    if copied[slot] is not None:
                        copied[slot].synchronize()
                    host = self._host_buffers(len(indices))[slot]
                    pairs = self.dataset.read_batch(indices, out=host)
                    # the per-pair generators and names too: Python work kept off the
                    # training thread
                    rngs = [item_rng(self.seed, epoch, i) for i in indices]
                    filled.put((slot, pairs, rngs, self._batch_paths(indices)))
                filled.put(None)
            except BaseException as error:      # re-raised in the consuming thread
                filled.put(error)

        reader = threading.Thread(target=read, name="fastp2p-packed-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = filled.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                slot, host, rngs, paths = item
                pairs = host.to(self.device, non_blocking=True)
                if cuda:
                    copied[slot] = torch.cuda.Event()
                    copied[slot].record()
                batch = augment_batch(pairs, self.dataset.config, rngs,
                                      swap=self.dataset.swap, dtype=self.dtype)
                free.put(slot)      # on the CPU the augmentation above has read it already
                yield {**batch, **paths}
        finally:
            stop.set()
            free.put(0)     # wakes a reader waiting for a slot; it sees ``stop`` and returns
            reader.join()
