"""PackedDeviceLoader's options do what they say on the CPU: drop_last drops the partial batch,
dtype is the batches' dtype, readers is the number of reader threads, fewer than 2 buffers is
refused, an abandoned epoch reads no further, and the host-memory estimate counts what the
readers augment (a user's CPU run: no TRITON_INTERPRET, which the test session sets)."""
import threading
import time

import pytest
import torch

from fastp2p.data import create_dataloader, create_dataset
from fastp2p.data import packed_loader
from fastp2p.data.packed_loader import PackedDeviceLoader
from helpers.data_helpers import data_args, synthetic_pack


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """6 packed pairs of random images at load size 20, cropped to 16."""
    _, out = synthetic_pack(tmp_path_factory.mktemp("packed_options"), 6)
    return create_dataset(data_args(out, "--load_size", "20", "--crop_size", "16"), "train")


class SlowReads:
    """A dataset whose read_batch calls are counted, with the thread that made each, and take
    ``delay`` seconds each after the first."""

    def __init__(self, dataset, delay):
        self.dataset, self.delay, self.threads = dataset, delay, []
        self.lock = threading.Lock()

    @property
    def reads(self):
        return len(self.threads)

    def read_batch(self, indices, out=None):
        with self.lock:
            self.threads.append(threading.current_thread().name)
            first = len(self.threads) == 1
        if not first:
            time.sleep(self.delay)
        return self.dataset.read_batch(indices, out=out)

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)


def test_drop_last_drops_the_partial_batch(dataset):
    kept = PackedDeviceLoader(dataset, 4, shuffle=True, seed=2, device="cpu")
    dropped = PackedDeviceLoader(dataset, 4, shuffle=True, seed=2, device="cpu", drop_last=True)
    for loader in (kept, dropped):
        loader.set_epoch(1)
    assert [len(b["A"]) for b in kept] == [4, 2] and len(kept) == 2
    batches = list(dropped)
    assert len(dropped) == 1 and [len(b["A"]) for b in batches] == [4]
    assert torch.equal(batches[0]["A"], next(iter(kept))["A"])


def test_batches_come_in_the_dtype_asked_for(dataset):
    wide = PackedDeviceLoader(dataset, 3, shuffle=True, seed=4, device="cpu")
    narrow = PackedDeviceLoader(dataset, 3, shuffle=True, seed=4, device="cpu",
                                dtype=torch.bfloat16)
    for w, n in zip(wide, narrow, strict=True):
        assert n["A"].dtype == n["B"].dtype == torch.bfloat16
        assert torch.equal(n["A"], w["A"].to(torch.bfloat16))
        assert torch.equal(n["B"], w["B"].to(torch.bfloat16))


@pytest.mark.parametrize("options", [dict(buffers=1), dict(readers=0), dict(batch_size=0)])
def test_too_few_buffers_readers_or_pairs_are_refused(dataset, options):
    options = {"batch_size": 2, **options}
    with pytest.raises(ValueError, match="buffers >= 2"):
        PackedDeviceLoader(dataset, shuffle=False, seed=0, device="cpu", **options)


def test_the_readers_option_is_the_number_of_reader_threads(dataset):
    slow = SlowReads(dataset, delay=0.1)
    loader = PackedDeviceLoader(slow, 1, shuffle=False, seed=0, device="cpu", readers=3,
                                buffers=5)
    assert len(list(loader)) == 6
    names = set(slow.threads)
    assert len(names) == 3 and all(n.startswith("fastp2p-packed-reader") for n in names), names


def test_an_abandoned_epoch_reads_no_further(dataset):
    # 0.5 s a read: a main thread held up that long on a loaded machine is unlikely
    slow = SlowReads(dataset, delay=0.5)
    loader = PackedDeviceLoader(slow, 1, shuffle=False, seed=0, device="cpu", readers=1,
                                buffers=6)
    batches = iter(loader)
    next(batches)
    batches.close()   # the rest of the epoch queued behind one reader: cancelled, not read
    assert slow.reads <= 3, slow.reads
    assert not any(t.name.startswith("fastp2p-packed-reader") for t in threading.enumerate())


def test_on_a_users_cpu_the_readers_augment_the_same_batches(dataset, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)   # no Triton kernel: the readers augment
    assert packed_loader.augments_in_reader(torch.device("cpu"))
    want = create_dataloader(dataset, 2, shuffle=True, num_workers=0, seed=5)
    got = PackedDeviceLoader(dataset, 2, shuffle=True, seed=5, device="cpu", readers=2)
    for epoch in (0, 3):
        want.set_epoch(epoch)
        got.set_epoch(epoch)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g["A"], w["A"]) and torch.equal(g["B"], w["B"])
            assert g["A_paths"] == w["A_paths"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_estimate_counts_each_reader_augmented_batch_and_its_dtype_copy(monkeypatch, dtype):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)   # a user's CPU: the readers augment
    pairs = 4 * 2 * 20 * 40 * 3                     # buffers x batch x pair bytes
    crops = 2 * 2 * 16 * 16 * 3                     # A and B elements per batch
    per_batch = crops * 4 + (crops * 2 if dtype == torch.bfloat16 else 0)
    got = packed_loader.loader_host_bytes((20, 40, 3), 2, 16, buffers=4, device="cpu",
                                          dtype=dtype)
    assert got == pairs + 5 * per_batch   # 4 batches read ahead and the one being trained on
