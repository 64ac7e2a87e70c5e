"""Batches at their edges. create_dataloader's own refusals (an empty dataset, bad sizes and
ranks, in its own words), no pinning warning where there is no GPU, item draws that tell every
(seed, epoch, index) apart. augment_batch (packed pairs' crop and flip): what it refuses (other
--preprocess modes, a one-channel side, pairs that are no batch, crop corners outside the
halves), generators from any iterable, an empty batch."""
import itertools
import random
import warnings

import pytest
import torch

from fastp2p.data import create_dataloader
from fastp2p.data.gpu_augment import augment_batch, augment_pairs_torch
from fastp2p.ops.augment import augment_runs_a_kernel as use_kernel
from fastp2p.data.loader import item_rng
from fastp2p.data.transforms import Preprocess


class _Pairs(torch.utils.data.Dataset):
    """``count`` random tiny pairs (no files)."""

    def __init__(self, count):
        generator = torch.Generator().manual_seed(count)
        self.a = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
        self.b = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1

    def __len__(self):
        return len(self.a)

    def __getitem__(self, index):
        return {"A": self.a[index], "B": self.b[index], "A_paths": f"a{index}",
                "B_paths": f"b{index}"}


def test_an_empty_dataset_is_refused_not_an_epoch_of_no_batches():
    with pytest.raises(ValueError, match="the dataset is empty: nothing to load"):
        create_dataloader(_Pairs(0), 2, shuffle=True, num_workers=0, seed=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, r"batch_size must be >= 1, got 0$"),
    ({"rank": 2, "world_size": 2}, r"rank must be in \[0, world_size\), got rank 2 of 2$"),
    ({"rank": -1, "world_size": 2}, r"got rank -1 of 2$"),
    ({"rank": 0, "world_size": 0}, r"got rank 0 of 0$"),
])
def test_bad_sizes_and_ranks_are_refused_in_fastp2ps_words(kwargs, message):
    """torch refuses some of these too, but in its own words (``Invalid rank``...)."""
    options = {"batch_size": 2, "shuffle": True, "num_workers": 0, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_dataloader(_Pairs(3), **options)


def test_pin_memory_without_a_gpu_loads_without_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dataset = _Pairs(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = create_dataloader(dataset, 2, shuffle=False, num_workers=0, seed=0,
                                   pin_memory=True)
        batches = list(loader)
    assert [str(w.message) for w in caught if "pin" in str(w.message).lower()] == []
    assert torch.equal(torch.cat([b["A"] for b in batches]), dataset.a)


def test_item_draws_differ_for_every_seed_epoch_and_index():
    """(1, 12, 3) and (11, 2, 3) are two draws: the parts of the key must not run together."""
    keys = list(itertools.product((1, 11, 12), (1, 2, 12, 23), (1, 3, 34)))
    draws = {key: item_rng(*key).random() for key in keys}
    assert len(set(draws.values())) == len(keys)
    assert all(item_rng(*key).random() == draw for key, draw in draws.items())   # repeatable


# ---- augment_batch / augment_pairs_torch: what they refuse

def _packed_pairs(count, height, width, seed=0):
    """Random uint8 (N, H, 2W, 3) pairs, as ``PackedDataset.read_batch`` gives them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, 2 * width, 3), dtype=torch.uint8,
                         generator=generator)


@pytest.mark.parametrize("mode", ["crop", "scale_width", "none"])
def test_augment_batch_refuses_preprocessing_other_than_resize_and_crop(mode):
    config = Preprocess(mode=mode, load_size=6, crop_size=4)
    with pytest.raises(ValueError, match=f"resize_and_crop on packed pairs, not {mode}$"):
        augment_batch(_packed_pairs(2, 6, 6), config, [random.Random(i) for i in range(2)])


def test_augment_batch_refuses_a_one_channel_b():
    config = Preprocess(load_size=6, crop_size=4, b_channels=1)
    with pytest.raises(ValueError, match="3-channel A and B"):
        augment_batch(_packed_pairs(2, 6, 6), config, [random.Random(i) for i in range(2)])


def test_augment_batch_refuses_pairs_that_are_not_a_batch():
    config = Preprocess(load_size=6, crop_size=4)
    with pytest.raises(ValueError, match=r"need uint8 \(N, H, 2W, 3\) pairs .* got \(6, 12, 3\)"):
        augment_batch(_packed_pairs(1, 6, 6)[0], config, [random.Random(i) for i in range(6)])


def test_augment_batch_takes_generators_from_any_iterable():
    config = Preprocess(load_size=6, crop_size=4)
    pairs = _packed_pairs(3, 6, 6)
    listed = augment_batch(pairs, config, [random.Random(i) for i in range(3)])
    generated = augment_batch(pairs, config, (random.Random(i) for i in range(3)))
    assert torch.equal(listed["A"], generated["A"]) and torch.equal(listed["B"], generated["B"])


@pytest.mark.parametrize("x, y, where", [
    (2, 3, "past the bottom"), (-1, 0, "left of A (into the other half)"),
    (0, -1, "above the top"),
])
def test_a_crop_corner_outside_the_halves_is_refused_not_read(x, y, where):
    """A corner past the halves would cut a short crop, or wrap into the other half's pixels."""
    pairs = _packed_pairs(2, 6, 6)
    crop_x = torch.tensor([0, x], dtype=torch.int32)
    crop_y = torch.tensor([0, y], dtype=torch.int32)
    flip = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"crop corners must lie in \[0, 2\] x \[0, 2\] for 4x4 "
                                         r"crops of 6x6 halves"):
        augment_pairs_torch(pairs, crop_x, crop_y, flip, crop_size=4, swap=True)


def test_an_empty_batch_gives_empty_a_and_b():
    empty = torch.zeros(0, dtype=torch.int32)
    a, b = augment_pairs_torch(_packed_pairs(0, 6, 6), empty, empty, empty, crop_size=4)
    assert a.shape == b.shape == (0, 3, 4, 4)


@pytest.mark.parametrize("setting", ["0", ""])
def test_cpu_tensors_take_the_torch_path_unless_triton_interprets(monkeypatch, setting):
    """The compiled kernel runs on CUDA only: on the CPU only the interpreter runs it."""
    monkeypatch.setenv("TRITON_INTERPRET", setting)
    assert not use_kernel(torch.device("cpu"))


def test_a_closed_loader_loads_again_with_new_workers():
    dataset = _Pairs(6)
    loader = create_dataloader(dataset, 2, shuffle=True, num_workers=2, seed=4)
    loader.set_epoch(1)
    first = list(loader)
    loader.close()
    again = list(loader)      # fresh workers: the same epoch's batches
    loader.close()
    assert [b["A_paths"] for b in again] == [b["A_paths"] for b in first]
    assert all(torch.equal(a["A"], b["A"]) for a, b in zip(first, again))


def test_close_after_torchs_own_shutdown_of_the_workers_does_nothing_more():
    """torch's exit hook may have shut the workers down before close runs (at exit, say):
    close then has nothing left to stop, and says nothing."""
    loader = create_dataloader(_Pairs(4), 2, shuffle=False, num_workers=2, seed=0)
    assert len(list(loader)) == 2
    loader._loader._iterator._shutdown_workers()    # what torch's exit hook does
    loader.close()
    loader.close()
