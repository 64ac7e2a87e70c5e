"""create_dataloader: order and augmentation fixed by (seed, epoch), rank shards like
DistributedSampler, batch layout, pinning, and bad files surfacing as one-line errors."""
import pytest
import torch
from torch.utils.data import DistributedSampler

from helpers.data_helpers import data_args, make_aligned
from fastp2p.data import DataError, create_dataloader, create_dataset

CROP_OPTIONS = ("--preprocess", "crop", "--load_size", "8", "--crop_size", "6")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    make_aligned(root, count=10, width=8, height=8)
    return create_dataset(data_args(root, *CROP_OPTIONS), "train")


def names(batches):
    return [path.rsplit("/", 1)[-1] for batch in batches for path in batch["A_paths"]]


def epoch_batches(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_batches_are_stacked_float_pairs_with_path_lists(dataset):
    loader = create_dataloader(dataset, 4, shuffle=True, num_workers=0, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3                  # 4 + 4 + 2
    assert [b["A"].shape[0] for b in batches] == [4, 4, 2]
    for batch in batches:
        assert set(batch) == {"A", "B", "A_paths", "B_paths"}
        for key in ("A", "B"):
            assert batch[key].dtype == torch.float32 and batch[key].shape[1:] == (3, 6, 6)
            assert batch[key].min() >= -1 and batch[key].max() <= 1
        assert isinstance(batch["A_paths"], list) and all(isinstance(p, str)
                                                          for p in batch["A_paths"])
    dropped = create_dataloader(dataset, 4, shuffle=True, num_workers=0, seed=0, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_start_batch_gives_the_rest_of_the_epoch_and_only_for_that_epoch(dataset, workers):
    loader = create_dataloader(dataset, 3, shuffle=True, num_workers=workers, seed=5)
    whole = epoch_batches(loader, 3)
    loader.set_epoch(3, start_batch=2)
    rest = list(loader)
    assert len(loader) == len(whole) == 4                    # len stays the whole epoch's
    assert len(rest) == 2 and names(rest) == names(whole[2:])
    for a, b in zip(rest, whole[2:]):
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
    assert names(epoch_batches(loader, 3)) == names(whole)   # the next set_epoch starts at 0


def test_order_and_augmentation_are_fixed_by_seed_and_epoch(dataset):
    first = create_dataloader(dataset, 3, shuffle=True, num_workers=0, seed=5)
    second = create_dataloader(dataset, 3, shuffle=True, num_workers=0, seed=5)
    epoch3_a, epoch3_b = epoch_batches(first, 3), epoch_batches(second, 3)
    assert names(epoch3_a) == names(epoch3_b)
    for a, b in zip(epoch3_a, epoch3_b):
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
    # another epoch: another order (and the same dataset)
    epoch4 = epoch_batches(first, 4)
    assert names(epoch4) != names(epoch3_a)
    assert sorted(names(epoch4)) == sorted(names(epoch3_a)) == [f"pair{i:02d}.png"
                                                              for i in range(10)]
    # back to epoch 3: the same again, whatever ran in between
    assert names(epoch_batches(first, 3)) == names(epoch3_a)
    other_seed = create_dataloader(dataset, 3, shuffle=True, num_workers=0, seed=6)
    assert names(epoch_batches(other_seed, 3)) != names(epoch3_a)


def test_each_epoch_draws_new_crops_and_flips_for_the_same_pairs(dataset):
    """The epoch is part of each pair's draw: without it every epoch repeated each pair's crop
    and flip (the order still changed with the epoch, so the test above could not tell)."""
    loader = create_dataloader(dataset, 10, shuffle=False, num_workers=0, seed=5)
    (epoch3,), (epoch4,) = epoch_batches(loader, 3), epoch_batches(loader, 4)
    assert epoch3["A_paths"] == epoch4["A_paths"]
    changed = [not torch.equal(a, b) for a, b in zip(epoch3["A"], epoch4["A"])]
    assert sum(changed) >= 5, changed     # 18 crops and flips each: 1 in 18 stays by chance


def test_augmentation_does_not_depend_on_the_number_of_workers(dataset):
    serial = epoch_batches(create_dataloader(dataset, 4, shuffle=True, num_workers=0, seed=1), 2)
    parallel = epoch_batches(create_dataloader(dataset, 4, shuffle=True, num_workers=2, seed=1),
                             2)
    assert names(serial) == names(parallel)
    for a, b in zip(serial, parallel):
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
    # the crops do vary from item to item (a loader that reused one draw would pass the above)
    crops = torch.cat([b["A"] for b in serial])
    assert len({tuple(c[0, 0, :2].tolist()) for c in crops}) > 1


def test_serial_batches_take_pairs_in_order(dataset, tmp_path):
    args = data_args(tmp_path, "--serial_batches")
    assert args.serial_batches
    loader = create_dataloader(dataset, 4, shuffle=not args.serial_batches, num_workers=0, seed=3)
    for epoch in (0, 1):
        assert names(epoch_batches(loader, epoch)) == [f"pair{i:02d}.png" for i in range(10)]


@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_ranks_shard_like_distributed_sampler(dataset, world_size):
    shards = []
    for rank in range(world_size):
        loader = create_dataloader(dataset, 2, shuffle=True, num_workers=0, seed=9, rank=rank,
                                   world_size=world_size)
        shards.append(names(epoch_batches(loader, 1)))
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=9)
        sampler.set_epoch(1)
        assert shards[-1] == [f"pair{i:02d}.png" for i in sampler]
    everything = [name for shard in shards for name in shard]
    assert set(everything) == {f"pair{i:02d}.png" for i in range(10)}
    assert len({len(shard) for shard in shards}) == 1          # equal shares, padded if needed
    if len(dataset) % world_size == 0:
        assert len(everything) == len(dataset)                # no overlap


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"num_workers": -1}, "num_workers"),
    ({"rank": 2, "world_size": 2}, "rank"),
])
def test_bad_loader_arguments_are_refused(dataset, kwargs, message):
    options = {"batch_size": 2, "shuffle": True, "num_workers": 0, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_dataloader(dataset, **options)


def test_pin_memory_without_a_gpu_still_loads(dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loader = create_dataloader(dataset, 5, shuffle=False, num_workers=0, seed=0, pin_memory=True)
    batches = list(loader)
    assert len(batches) == 2 and not batches[0]["A"].is_pinned()


@pytest.mark.cuda
def test_pin_memory_pins_batches(dataset):
    loader = create_dataloader(dataset, 5, shuffle=True, num_workers=2, seed=0, pin_memory=True)
    host = epoch_batches(loader, 0)
    assert all(b["A"].is_pinned() and b["B"].is_pinned() for b in host)


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "workers"])
def test_a_file_that_breaks_after_the_scan_raises_one_line_naming_it(tmp_path, num_workers):
    paths = make_aligned(tmp_path, count=4, width=8, height=8)
    dataset = create_dataset(data_args(tmp_path, *CROP_OPTIONS), "train")
    paths[2].write_bytes(paths[2].read_bytes()[:60])          # truncated after the scan
    loader = create_dataloader(dataset, 2, shuffle=False, num_workers=num_workers, seed=0)
    with pytest.raises(DataError) as caught:
        list(loader)
    message = str(caught.value)
    del caught, loader
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(str(paths[2])) and "cannot decode" in message
