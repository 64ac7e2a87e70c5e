"""Input pipeline throughput: folder-of-JPEG loading against packed shards, on this machine's
CPU cores, and the fused augmentation kernel on a GPU when there is one.

A synthetic aligned dataset (smooth random 256x256 A and B halves, saved as quality-90 JPEGs,
the size of the pix2pix datasets' files) is packed at load_size 286 with ``fastp2p pack``; then,
all in one process (one torch thread, like a loader worker), with a warm page cache:
- ``folder items``: the folder dataset's items (JPEG decode, bicubic resize to 286, crop 256,
  flip, normalize), what training without ``fastp2p pack`` pays per pair;
- ``shard items``: the packed dataset's items (positioned read, crop, flip, normalize on the
  CPU: the CPU training path);
- ``shard batches``: ``read_batch`` of 64 random pairs, uint8 286x572x3 each (one positioned
  read each: what the GPU path reads; crop/flip/normalize then run on the GPU);
- ``shard CRC32``: the corruption check a process runs once per shard when it first opens it
  (``zlib.crc32`` over the shard's bytes, read in blocks), per pair, so its ratio to ``shard
  batches`` is the cost of checking the whole pack relative to one epoch's read time;
- the same three through a DataLoader with one worker per core, and an epoch of
  ``PackedDeviceLoader`` (reader threads, augmentation where the batches go; with one reader
  and with its default, one per usable core) (full mode);
- ``augment``: crop/flip/split/normalize of a uint8 batch, the PyTorch gather on the CPU and, on
  CUDA, the Triton kernel against the same gather on the GPU.
Every row carries ``pairs_per_s``. Run: ``python benchmarks/bench_data.py [--quick]``.
"""
import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastp2p.bench.timing import benchmark
from fastp2p.cpu_info import usable_cpus
from fastp2p.data.datasets import AlignedDataset
from fastp2p.data.gpu_augment import augment_pairs_torch, draw_crop_flips
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_loader import PackedDeviceLoader, default_readers
from fastp2p.data.transforms import Preprocess

LOAD, CROP, HALF = 286, 256, 256
BATCH = 64


def _smooth_image(rng, height, width) -> np.ndarray:
    """Photo-like content (smooth colour fields plus a little grain) so JPEG sizes and decode
    times resemble real datasets' rather than those of white noise."""
    coarse = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    grain = rng.integers(-6, 7, smooth.shape)
    return np.clip(smooth.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def make_dataset(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(count):
        Image.fromarray(_smooth_image(rng, HALF, 2 * HALF)).save(
            root / "train" / f"{i:05d}.jpg", quality=90)


def _timed_row(name, fn, pairs_per_call, quick, device="cpu", **extra) -> dict:
    """A suite row; on the CPU also this process's CPU time per call (mean), which shows how
    much of the wall time other processes on a shared machine took (workers not included)."""
    spent = {"calls": 0, "cpu_s": 0.0}

    def counted():
        begin = time.process_time()
        fn()
        spent["cpu_s"] += time.process_time() - begin
        spent["calls"] += 1

    timing = benchmark(counted, device=device, warmup_ms=20 if quick else 200,
                       rep_ms=150 if quick else 1500, min_reps=3 if quick else 5)
    row = {"name": name, **timing.as_dict(), "pairs_per_call": pairs_per_call,
           "pairs_per_s": pairs_per_call / (timing.median_ms * 1e-3), "device": device, **extra}
    if device == "cpu":
        row["process_cpu_ms_mean"] = spent["cpu_s"] * 1e3 / spent["calls"]
    return row


class _Batches(torch.utils.data.Dataset):
    """Item i = batch i of a fixed random order (for DataLoader(batch_size=None) workers)."""

    def __init__(self, read, count, batch):
        order = np.random.default_rng(1).permutation(count)
        self.read = read
        self.batches = [order[i:i + batch].tolist() for i in range(0, count - batch + 1, batch)]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.read(self.batches[i])


def _loader_row(name, batches: _Batches, workers, quick, **extra) -> dict:
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers,
                                         persistent_workers=True, prefetch_factor=4)
    per_pass = sum(len(b) for b in batches.batches)

    def one_pass():
        for _ in loader:
            pass
    return _timed_row(name, one_pass, per_pass, quick, workers=workers, **extra)


def _items(dataset, indices):
    return [dataset.load(i, random.Random(i)) for i in indices]


def cpu_rows(root: Path, count: int, quick: bool) -> list:
    # One intra-op thread, as in a DataLoader worker: on a shared 2-core machine torch's
    # thread pool otherwise waits for preempted threads and the figures swing tenfold.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _cpu_rows(root, count, quick)
    finally:
        torch.set_num_threads(threads)


def _cpu_rows(root: Path, count: int, quick: bool) -> list:
    config = Preprocess(load_size=LOAD, crop_size=CROP)
    pack_phase(root / "data", root / "packed", "train", load_size=LOAD,
               workers=1 if quick else usable_cpus(), progress=False)
    folder = AlignedDataset(sorted((root / "data" / "train").glob("*.jpg")), config, swap=False)
    packed = PackedDataset(root / "packed" / "train", config, swap=False)
    batch = min(BATCH, count)
    indices = np.random.default_rng(2).permutation(count)[:batch].tolist()
    shape = f"{LOAD}x{2 * LOAD} -> 2x{CROP}x{CROP}"
    packed.read_batch(range(count))            # warm the page cache, open the shards
    rows = [
        _timed_row("data folder items (JPEG decode+resize+crop)",
                   lambda: _items(folder, indices[:8]), 8, quick, provider="folder", shape=shape),
        _timed_row("data shard items (pread+crop+normalize, CPU)", lambda: _items(packed, indices),
                   batch, quick, provider="shard-items", shape=shape),
        _timed_row("data shard batches (pread uint8)", lambda: packed.read_batch(indices),
                   batch, quick, provider="shard-batches", shape=f"{LOAD}x{2 * LOAD}x3 uint8",
                   bytes=2 * batch * LOAD * 2 * LOAD * 3),
    ]
    first, pairs = packed._shard(0), packed.shards[0]["count"]
    rows.append(_timed_row("data shard CRC32 (preads + zlib, once per shard per process)",
                           lambda: packed._crc32(first.fd, pairs * first.row_bytes), pairs, quick,
                           provider="shard-crc32", shape=f"{LOAD}x{2 * LOAD}x3 uint8",
                           bytes=pairs * first.row_bytes))
    raw = packed.read_batch(indices)
    crop_x, crop_y, flip = draw_crop_flips(config, LOAD, LOAD, [random.Random(i) for i in indices])
    rows.append(_timed_row(
        "data augment uint8->fp32 (PyTorch gather, CPU)",
        lambda: augment_pairs_torch(raw, crop_x, crop_y, flip, crop_size=CROP), batch, quick,
        provider="torch", shape=shape, dtype="float32"))
    if not quick:
        rows += [_device_loader_row(packed, "cpu", torch.float32, quick, readers)
                 for readers in sorted({1, default_readers()})]
        workers = usable_cpus()
        rows += [
            _loader_row(f"data folder items, {workers} workers",
                        _Batches(lambda b: _items(folder, b), count, 16), workers, quick,
                        provider="folder", shape=shape),
            _loader_row(f"data shard items, {workers} workers",
                        _Batches(lambda b: _items(packed, b), count, BATCH), workers, quick,
                        provider="shard-items", shape=shape),
            _loader_row(f"data shard batches, {workers} workers",
                        _Batches(packed.read_batch, count, BATCH), workers, quick,
                        provider="shard-batches", shape=f"{LOAD}x{2 * LOAD}x3 uint8"),
        ]
    return rows


def _device_loader_row(packed, device, dtype, quick, readers=None) -> dict:
    """A whole epoch of PackedDeviceLoader (reader threads + augmentation on ``device``)."""
    loader = PackedDeviceLoader(packed, BATCH, shuffle=True, seed=0, device=device, dtype=dtype,
                                readers=readers)

    def one_epoch():
        for batch in loader:
            pass
        if device == "cuda":
            torch.cuda.synchronize()
    dtype_name = str(dtype).replace("torch.", "")
    return _timed_row(f"data PackedDeviceLoader epoch -> {device} {dtype_name}, "
                      f"{loader.readers} readers", one_epoch,
                      len(loader.sampler), quick, provider="packed-device-loader",
                      readers=loader.readers,
                      dtype=dtype_name, shape=f"{LOAD}x{2 * LOAD} -> 2x{CROP}x{CROP}",
                      **({"device": "cuda"} if device == "cuda" else {}))


def cuda_rows(quick: bool) -> list:
    from fastp2p.kernels.augment import augment_pairs
    config = Preprocess(load_size=LOAD, crop_size=CROP)
    rows = []
    for batch in (1, 64):
        pairs = torch.randint(0, 256, (batch, LOAD, 2 * LOAD, 3), dtype=torch.uint8,
                              device="cuda")
        draws = draw_crop_flips(config, LOAD, LOAD, [random.Random(i) for i in range(batch)])
        crop_x, crop_y, flip = (t.cuda() for t in draws)
        for dtype in (torch.bfloat16, torch.float32):
            # the cropped part of both halves read once, A and B written once
            moved = batch * 2 * CROP * CROP * 3 * (1 + dtype.itemsize)
            providers = {
                "torch": lambda: augment_pairs_torch(pairs, crop_x, crop_y, flip, crop_size=CROP,
                                                     dtype=dtype),
                "fastp2p": lambda: augment_pairs(pairs, crop_x, crop_y, flip, crop_size=CROP,
                                                 dtype=dtype),
            }
            for provider, fn in providers.items():
                dtype_name = str(dtype).replace("torch.", "")
                rows.append(_timed_row(
                    f"augment N{batch} {LOAD}->{CROP} {dtype_name}: {provider}", fn, batch, quick,
                    device="cuda", provider=provider, dtype=dtype_name, bytes=moved,
                    shape=f"N{batch}-{LOAD}x{2 * LOAD}-crop{CROP}"))
    return rows


def collect(quick: bool = False) -> list:
    count = 16 if quick else 512
    with tempfile.TemporaryDirectory(prefix="fastp2p-bench-data-") as tmp:
        root = Path(tmp)
        make_dataset(root / "data", count)
        rows = cpu_rows(root, count, quick)
        if torch.cuda.is_available():
            config = Preprocess(load_size=LOAD, crop_size=CROP)
            packed = PackedDataset(root / "packed" / "train", config, swap=False)
            rows.append(_device_loader_row(packed, "cuda", torch.bfloat16, quick))
            rows += cuda_rows(quick)
    cores = usable_cpus()
    for row in rows:
        row.setdefault("cpu_cores", cores)
        if row["device"] == "cpu":
            row.setdefault("torch_threads", 1)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 pairs, short timings (smoke)")
    args = parser.parse_args(argv)
    rows = collect(args.quick)
    gpu = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    print(f"{usable_cpus()} CPU cores, torch {torch.__version__}, {gpu}")
    for row in rows:
        cpu = (f"  (this process's CPU: {row['process_cpu_ms_mean']:.2f} ms/call)"
               if "process_cpu_ms_mean" in row else "")
        print(f"{row['name']:50s} {row['median_ms']:9.2f} ms/call "
              f"{row['pairs_per_s']:9.0f} pairs/s{cpu}")
    # the in-process rows (the first of each provider; the DataLoader rows come later)
    rate = {}
    for row in rows:
        rate.setdefault(row["provider"], row["pairs_per_s"])
    print(f"checking every shard's CRC32 (once per process) costs "
          f"{rate['shard-batches'] / rate['shard-crc32']:.2f} x one epoch's shard-batch read "
          "time (ratio of the in-process rows above, measured in this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
