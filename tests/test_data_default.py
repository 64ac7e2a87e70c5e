"""The embedded default dataset: cut from photographs shipped in scikit-image's wheel, without
the network; the same bytes every build; written atomically; train/val/test held apart."""
import hashlib
import importlib.metadata
import os
import random
import socket
import subprocess

import pytest
import torch
from PIL import Image

from helpers.data_helpers import data_args
from fastp2p.data import DataError, create_dataset, default_dataroot
from fastp2p.data import create, default_dataset, pack
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import VERSION

pytest.importorskip("skimage")

SPLITS = ("train", "val", "test")


def no_network(*args, **kwargs):
    raise AssertionError("the default dataset build tried to use the network")


def build(cache, monkeypatch, task="edges2photo"):
    monkeypatch.setenv("FASTP2P_CACHE", str(cache))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return default_dataroot(task)


def contents(root):
    """{relative path: sha256} of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        cache = tmp_path_factory.mktemp("cache")
        return cache, build(cache, monkeypatch)


def test_photographs_are_the_ones_shipped_in_the_scikit_image_wheel():
    shipped = {str(f) for f in importlib.metadata.files("scikit-image")}
    for name in default_dataset.PHOTOS:
        assert f"skimage/data/{name}" in shipped, name


def test_splits_hold_aligned_pairs_from_different_places_of_every_photograph(built):
    cache, root = built
    assert root.parent == cache and root.name.startswith("default-edges2photo-")
    files = {split: sorted((root / split).iterdir()) for split in SPLITS}
    assert (sorted(p.name for p in root.iterdir() if p.name != default_dataset.BUILT_MARKER)
            == sorted(SPLITS))
    crop, quarters = default_dataset.CROP, default_dataset.HELD_OUT_WIDTH
    for split in SPLITS:
        # names are PHOTO_wWIDTH_yY_xX: every photograph is in every split
        sources = {p.name.rsplit("_w", 1)[0] for p in files[split]}
        assert sources == {n.rsplit(".", 1)[0] for n in default_dataset.PHOTOS}, split
        for path in files[split]:
            width, y, x = (int(part[1:]) for part in path.stem.rsplit("_", 3)[1:])
            band = width * (quarters - 1) // quarters  # where the held-out right quarter starts
            if split == "train":
                assert x + crop <= band, path.name     # never inside the held-out band
            else:
                assert x == band and width == quarters * crop, path.name
    for photo in default_dataset.PHOTOS:   # val crops above test crops: they never overlap
        stem = photo.rsplit(".", 1)[0]
        ys = {split: [int(p.stem.rsplit("_", 2)[1][1:]) for p in files[split]
                      if p.name.rsplit("_w", 1)[0] == stem] for split in ("val", "test")}
        assert max(ys["val"]) + crop <= min(ys["test"]), photo
    digests = {split: {hashlib.sha256(p.read_bytes()).digest() for p in files[split]}
               for split in SPLITS}
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    with Image.open(files["val"][0]) as pair:
        assert pair.size == (2 * default_dataset.CROP, default_dataset.CROP)
        assert pair.mode == "RGB"
        edges = pair.crop((0, 0, default_dataset.CROP, default_dataset.CROP)).convert("L")
    # A is an edge map: black lines on white, few dark pixels
    histogram = edges.histogram()
    assert sum(histogram[200:]) > 0.7 * sum(histogram) and sum(histogram[:60]) > 0


def test_no_dataroot_means_the_default_dataset(built, monkeypatch):
    cache, root = built
    monkeypatch.setenv("FASTP2P_CACHE", str(cache))
    monkeypatch.setattr(default_dataset, "build_default_dataset", no_rebuild)
    dataset = create_dataset(data_args(None, "--task", "edges2photo"), "test")
    assert len(dataset) == len(list((root / "test").iterdir()))
    item = dataset[0]
    assert item["A"].shape == item["B"].shape == (3, 256, 256)
    assert item["A"].dtype == torch.float32 and item["A_paths"].startswith(str(root / "test"))


def no_rebuild(*args):
    raise AssertionError("the cached default dataset was built again")


def test_the_train_split_is_read_from_a_pack_of_the_same_pairs_built_once(built, monkeypatch):
    cache, root = built
    monkeypatch.setenv("FASTP2P_CACHE", str(cache))
    monkeypatch.setattr(default_dataset, "build_default_dataset", no_rebuild)
    options = ("--load_size", "72", "--crop_size", "64", "--direction", "BtoA")
    packed = create_dataset(data_args(None, "--task", "edges2photo", *options), "train",
                            pack_embedded=True)
    folders = create_dataset(data_args(root, *options), "train", pack_embedded=True)
    assert isinstance(packed, PackedDataset) and not isinstance(folders, PackedDataset)
    assert packed.phase_dir == cache / f"{root.name}-train-packed72-v{VERSION}" / "train"
    assert len(packed) == len(folders) == len(list((root / "train").iterdir()))
    for index in range(0, len(folders), 97):
        for seed in range(2):
            want, got = folders.load(index, random.Random(seed)), packed.load(index,
                                                                           random.Random(seed))
            assert torch.equal(got["A"], want["A"]) and torch.equal(got["B"], want["B"])
    monkeypatch.setattr(pack, "pack_phase", no_rebuild)    # once built, the pack is reused
    again = create_dataset(data_args(None, "--task", "edges2photo", *options), "train",
                           pack_embedded=True)
    assert again.phase_dir == packed.phase_dir
    # what only averages the split once (fastp2p test's constant baseline) reads the folders
    assert not isinstance(create_dataset(data_args(None, "--task", "edges2photo", *options),
                                         "train"), PackedDataset)


@pytest.mark.parametrize("phase, options", [
    ("test", ("--load_size", "72", "--crop_size", "64")),      # read once per run: no pack
    ("train", ()),                                             # 286 > the stored 128x128 crops
    ("train", ("--load_size", "72", "--crop_size", "64", "--input_nc", "1")),
    ("train", ("--load_size", "72", "--crop_size", "64", "--preprocess", "crop")),
])
def test_the_folders_are_read_where_a_pack_does_not_serve(built, monkeypatch, phase, options):
    cache, _ = built
    monkeypatch.setenv("FASTP2P_CACHE", str(cache))
    monkeypatch.setattr(pack, "pack_phase", no_rebuild)
    dataset = create_dataset(data_args(None, "--task", "edges2photo", *options), phase,
                             pack_embedded=True)
    assert not isinstance(dataset, PackedDataset)


# outside torchrun (None), and a node's second and first process of a torchrun job (RANK,
# LOCAL_RANK), which say the note as tests/test_train_refusals_once.py's: every process of a
# node reads the same cache, so the node's first alone says it, with "rank N: " off rank 0
@pytest.mark.parametrize("ranks, prefix", [(None, ""), (("1", "1"), None),
                                           (("2", "0"), "rank 2: ")])
def test_a_cache_that_cannot_hold_the_pack_reads_the_folders(built, monkeypatch, capsys, ranks,
                                                             prefix):
    cache, root = built
    monkeypatch.setenv("FASTP2P_CACHE", str(cache))
    if ranks:
        for name, value in zip(("WORLD_SIZE", "RANK", "LOCAL_RANK"), ("4", *ranks)):
            monkeypatch.setenv(name, value)

    def read_only(*args):
        raise DataError(f"{cache}: cannot create the cache folder for the default dataset's "
                        "train pack ([Errno 30] Read-only file system)")
    monkeypatch.setattr(create, "packed_default_dataroot", read_only)
    dataset = create_dataset(data_args(None, "--task", "edges2photo", "--load_size", "40",
                                       "--crop_size", "32"), "train", pack_embedded=True)
    assert not isinstance(dataset, PackedDataset)
    assert len(dataset) == len(list((root / "train").iterdir()))
    message = capsys.readouterr().err
    if prefix is None:
        assert message == ""
        return
    assert message.startswith(f"{prefix}fastp2p: reading the embedded train split from its "
                              "image folders ("), message
    assert "Read-only file system" in message and message.count("\n") == 1


def test_a_killed_build_is_removed_by_the_next_one(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()                                   # a pid that no longer runs
    cache = tmp_path / "cache"
    prefix = f".building-default-edges2photo-{default_dataset._fingerprint('edges2photo')}-"
    leftover = cache / f"{prefix}{dead.pid}-abc"
    (leftover / "train").mkdir(parents=True)
    running = cache / f"{prefix}{os.getpid()}-def"     # a live process's build: kept
    running.mkdir()
    root = build(cache, monkeypatch)
    assert not leftover.exists() and running.is_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted([root.name, running.name])
