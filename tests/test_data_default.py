"""The embedded default dataset: cut from photographs shipped in scikit-image's wheel, without
the network; the same bytes every build; written atomically; train/val/test held apart."""
import hashlib
import importlib.metadata
import random
import socket

import pytest
import torch
from PIL import Image

from helpers.data_helpers import data_args
from fastp2p.data import DataError, create_dataset, default_dataroot
from fastp2p.data import default_dataset, pack
from fastp2p.data.packed import PackedDataset

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
    assert sorted(p.name for p in root.iterdir()) == sorted(SPLITS)
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
    packed = create_dataset(data_args(None, "--task", "edges2photo", *options), "train")
    folders = create_dataset(data_args(root, *options), "train")
    assert isinstance(packed, PackedDataset) and not isinstance(folders, PackedDataset)
    assert packed.phase_dir == cache / f"{root.name}-train-packed72" / "train"
    assert len(packed) == len(folders) == len(list((root / "train").iterdir()))
    for index in range(0, len(folders), 97):
        for seed in range(2):
            want, got = folders.load(index, random.Random(seed)), packed.load(index,
                                                                           random.Random(seed))
            assert torch.equal(got["A"], want["A"]) and torch.equal(got["B"], want["B"])
    monkeypatch.setattr(pack, "pack_phase", no_rebuild)    # once built, the pack is reused
    again = create_dataset(data_args(None, "--task", "edges2photo", *options), "train")
    assert again.phase_dir == packed.phase_dir


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
    dataset = create_dataset(data_args(None, "--task", "edges2photo", *options), phase)
    assert not isinstance(dataset, PackedDataset)


def test_a_second_build_gives_the_same_bytes(built, tmp_path, monkeypatch):
    _, first = built
    second = build(tmp_path / "other-cache", monkeypatch)
    assert second.name == first.name
    assert contents(second) == contents(first)
    # and once built it is reused, not rebuilt
    monkeypatch.setattr(default_dataset, "build_default_dataset", no_rebuild)
    assert default_dataroot("edges2photo") == second


def test_an_interrupted_build_leaves_nothing_behind(tmp_path, monkeypatch):
    saves = []
    real_save = Image.Image.save

    def save_then_fail(self, path, *args, **kwargs):
        if len(saves) == 5:
            raise OSError(28, "No space left on device")
        saves.append(path)
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        build(cache, monkeypatch)
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message
    assert "FASTP2P_CACHE" in message
    assert len(saves) == 5 and all(path.exists() is False for path in saves)
    assert list(cache.iterdir()) == []          # no half dataset, no temporary folder


def test_another_process_finishing_first_is_fine(tmp_path, monkeypatch):
    real_build = default_dataset.build_default_dataset

    def build_while_another_process_finishes(out_dir, task):
        counts = real_build(out_dir, task)
        final = out_dir.parent / f"default-{task}-{default_dataset._fingerprint(task)}"
        (final / "train").mkdir(parents=True)      # the other process's whole dataset
        return counts

    monkeypatch.setattr(default_dataset, "build_default_dataset",
                        build_while_another_process_finishes)
    root = build(tmp_path / "cache", monkeypatch, task="gray2color")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.name]
    assert [p.name for p in root.iterdir()] == ["train"]


def test_an_unknown_task_is_refused():
    with pytest.raises(DataError, match="edges2photo"):
        default_dataroot("photo2edges")
