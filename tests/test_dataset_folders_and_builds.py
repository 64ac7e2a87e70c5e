"""Datasets on disk at their edges. Folder scans: .jpeg files, the count of left-out files
named, a phase path that is a file, --skip-bad decoding every file, an aligned folder holding only
an A/ subfolder, grayscale among colour with one side one-channel, the smallest sliver
--preprocess none keeps, two-folder pairs in subfolders, B images checked like A images. The
embedded default dataset, without building it whole: train crops reach the edges of the train
area, gray2color's A is the photo in grayscale, each task has its own folder, an unknown task is
refused, a build that fails or cannot start leaves nothing behind and says so in one DataError.
``write_synthetic``: which files are its pairs (a user's are refused, never removed), what its
record keeps, pairs that depend on (seed, index), outlines two pixels wide."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from helpers.data_helpers import (data_args, gradient_half, make_aligned, to_pixels, write_ab,
                                  write_image)
from fastp2p.data import DataError, create_dataset, default_dataroot
from fastp2p.data import default_dataset
from fastp2p.data.default_dataset import CROP, HELD_OUT_WIDTH, _built_once, _crop_windows
from fastp2p.data.folders import list_images
from fastp2p.data.synthetic import pair_name, synthetic_pair, write_synthetic


# ---- folder scans

CROP_OPTIONS = ("--preprocess", "crop", "--load_size", "16", "--crop_size", "12")
TWO_FOLDERS = ("--dataset_mode", "two_folders", *CROP_OPTIONS)


def _noisy(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_jpeg_files_are_images_whatever_the_case_of_their_extension(tmp_path):
    paths = [write_image(tmp_path / name, _noisy(8, 4)) for name in ("a.jpeg", "b.JPEG", "c.jpg")]
    assert list_images(tmp_path) == paths


@pytest.mark.parametrize("count, tail", [(3, "c.txt\n"), (4, "c.txt and 1 more\n")])
def test_the_left_out_files_named_are_the_first_three_and_a_count_of_the_rest(tmp_path, capsys,
                                                                             count, tail):
    make_aligned(tmp_path, count=1)
    for name in "abcd"[:count]:
        (tmp_path / "train" / f"{name}.txt").write_text(name)
    list_images(tmp_path / "train")
    err = capsys.readouterr().err
    assert err.startswith(f"fastp2p: ignoring {count} files in {tmp_path / 'train'} (only ")
    assert err.endswith(f"images are read): a.txt, b.txt, {tail}")


def test_with_skip_bad_a_phase_folder_that_cannot_be_listed_is_still_an_error(tmp_path,
                                                                              monkeypatch):
    """Only its subfolders are skipped: the folder itself unlisted is no "no images found"."""
    make_aligned(tmp_path, count=2)
    locked, scandir = tmp_path / "train", os.scandir

    def refuse_locked(path):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refuse_locked)
    with pytest.raises(DataError, match=f"^{locked}: cannot list this folder \\(Permission "
                                        "denied\\); make it readable"):
        create_dataset(data_args(tmp_path, *CROP_OPTIONS, "--skip-bad"), "train")


def test_a_phase_path_that_is_a_file_is_a_folder_not_found(tmp_path):
    (tmp_path / "train").write_bytes(b"not a folder")
    with pytest.raises(DataError, match=f"^{tmp_path / 'train'}: folder not found; expected "):
        create_dataset(data_args(tmp_path, *CROP_OPTIONS), "train")


def test_skip_bad_decodes_every_file_and_skips_one_truncated_in_its_pixels(tmp_path, capsys):
    good = make_aligned(tmp_path, count=2, width=24, height=24)
    cut = tmp_path / "train" / "cut.jpg"
    Image.fromarray(_noisy(48, 24)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])    # header whole, pixels not
    headers_only = create_dataset(data_args(tmp_path, *CROP_OPTIONS), "train")
    assert len(headers_only) == 3                                # the header reads fine
    dataset = create_dataset(data_args(tmp_path, *CROP_OPTIONS, "--skip-bad"), "train")
    assert dataset.paths == [str(p) for p in good]
    assert f"{cut}: truncated or corrupt image" in capsys.readouterr().err


def test_an_aligned_folder_with_an_a_subfolder_but_no_b_is_read_as_aligned(tmp_path):
    paths = [write_ab(tmp_path / "train" / "A" / f"{i}.png", 16, 16) for i in range(2)]
    dataset = create_dataset(data_args(tmp_path, *CROP_OPTIONS), "train")
    assert dataset.paths == [str(p) for p in paths]


def test_preprocess_none_keeps_a_three_pixel_sliver_that_rounds_to_four(tmp_path):
    paths = [write_ab(tmp_path / "train" / f"{i}.png", 16, 3) for i in range(2)]
    dataset = create_dataset(data_args(tmp_path, "--preprocess", "none"), "train")
    assert dataset.paths == [str(p) for p in paths]
    assert dataset[0]["A"].shape == (3, 4, 16)


def test_two_folders_pair_files_of_one_name_in_different_subfolders_by_their_path(tmp_path):
    for sub, blue in (("x", 30), ("y", 90)):
        write_image(tmp_path / "train" / "A" / sub / "1.png", gradient_half(12, 12, blue))
        write_image(tmp_path / "train" / "B" / sub / "1.png", gradient_half(12, 12, blue + 1))
    dataset = create_dataset(data_args(tmp_path, *TWO_FOLDERS), "train")
    assert dataset.pairs == [tuple(str(tmp_path / "train" / side / sub / "1.png")
                                   for side in "AB") for sub in "xy"]
    blues = [(to_pixels(item["A"])[0, 0, 2], to_pixels(item["B"])[0, 0, 2])
             for item in (dataset[0], dataset[1])]
    assert blues == [(30, 31), (90, 91)]


def test_skip_bad_leaves_out_the_pair_of_a_bad_b_image(tmp_path, capsys):
    for i in range(3):
        write_image(tmp_path / "train" / "A" / f"{i}.png", _noisy(12, 12, seed=i))
        write_image(tmp_path / "train" / "B" / f"{i}.png", _noisy(12, 12, seed=10 + i))
    bad = tmp_path / "train" / "B" / "1.png"
    bad.write_bytes(b"not an image")
    dataset = create_dataset(data_args(tmp_path, *TWO_FOLDERS, "--skip-bad"), "train")
    assert [b.rsplit("/", 1)[-1] for _, b in dataset.pairs] == ["0.png", "2.png"]
    assert f"{bad}: not a readable image" in capsys.readouterr().err


# ---- the embedded default dataset

@pytest.mark.parametrize("height", [CROP, CROP + 1, 300])
def test_train_crops_cover_the_train_area_to_its_bottom_and_right_edges(height):
    width = HELD_OUT_WIDTH * CROP
    band = width * (HELD_OUT_WIDTH - 1) // HELD_OUT_WIDTH
    windows = _crop_windows(width, height, HELD_OUT_WIDTH)["train"]
    covered = np.zeros((height, width), bool)
    for y, x in windows:
        covered[y:y + CROP, x:x + CROP] = True
    assert covered[:, :band].all()                 # every pixel of the train area, edges too
    assert not covered[:, band:].any()             # and none of the held-out band
    ys, xs = sorted({y for y, _ in windows}), sorted({x for _, x in windows})
    assert xs == [0, 64, 128, 192, 256] and ys[-1] == height - CROP
    assert len(windows) == len(ys) * len(xs)       # no crop twice


def test_a_photo_gives_train_crops_at_both_widths_and_held_out_crops_at_four(tmp_path):
    source = write_image(tmp_path / "photo.png",
                         np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    for split in ("train", "val", "test"):
        (tmp_path / "out" / split).mkdir(parents=True)
    counts = default_dataset._write_pairs(source, "gray2color", tmp_path / "out")
    widths = {split: sorted({int(p.stem.split("_")[1][1:]) for p in (tmp_path / "out" / split)
                             .iterdir()}) for split in counts}
    assert widths == {"train": [4 * CROP, 6 * CROP], "val": [4 * CROP], "test": [4 * CROP]}
    assert counts == {split: len(list((tmp_path / "out" / split).iterdir())) for split in counts}
    with Image.open(next((tmp_path / "out" / "val").iterdir())) as pair:
        assert pair.size == (2 * CROP, CROP)


def test_gray2color_pairs_a_grayscale_copy_of_the_photo_with_the_photo():
    photo = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    condition = default_dataset._condition(photo, "gray2color")
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    assert condition.shape == photo.shape and condition.dtype == np.uint8
    for channel in range(3):
        assert np.array_equal(condition[..., channel], gray)


def test_each_task_is_built_into_a_folder_of_its_own():
    pytest.importorskip("skimage")
    prints = {task: default_dataset._fingerprint(task) for task in ("gray2color", "edges2photo")}
    assert prints["gray2color"] != prints["edges2photo"]


def test_an_unknown_task_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="default dataset task 'photo2edges' is not one of "
                                        "gray2color, edges2photo"):
        default_dataroot("photo2edges")
    assert not (tmp_path / "cache").exists()


def _build(folder):
    (folder / "train").mkdir()
    (folder / "train" / "x.jpg").write_bytes(os.urandom(16))


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".building-"))


def test_a_build_that_fails_leaves_nothing_behind_and_says_so(tmp_path):
    def disk_full(folder):
        _build(folder)
        raise OSError(28, "No space left on device")
    final = tmp_path / "cache" / "default-x"
    with pytest.raises(DataError) as caught:
        _built_once(final, disk_full, "the default dataset")
    message = str(caught.value)
    assert message.startswith(f"{final}: building the default dataset failed (")
    assert "No space left on device" in message and "nothing was left behind" in message
    assert not final.exists() and _leftovers(final.parent) == []


def test_a_rename_that_fails_is_an_error_not_a_missing_folder(tmp_path, monkeypatch):
    def refuse(source, target):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(default_dataset.os, "rename", refuse)
    final = tmp_path / "cache" / "default-x"
    with pytest.raises(DataError, match="building the default dataset failed"):
        _built_once(final, _build, "the default dataset")
    assert not final.exists() and _leftovers(final.parent) == []


def test_a_cache_folder_that_cannot_be_made_is_one_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    final = blocker / "cache" / "default-x"
    with pytest.raises(DataError) as caught:
        _built_once(final, _build, "the default dataset")
    message = str(caught.value)
    assert message.startswith(f"{final.parent}: cannot create the cache folder for the default "
                              "dataset (")
    assert "set FASTP2P_CACHE to a writable folder or pass --dataroot" in message


def test_a_build_folder_not_named_by_a_pid_is_left_alone(tmp_path):
    final = tmp_path / "cache" / "default-x"
    other = final.parent / f".building-{final.name}-notapid-1"
    other.mkdir(parents=True)
    assert _built_once(final, _build, "the default dataset") == final
    assert (final / "train" / "x.jpg").is_file() and other.is_dir()


# ---- write_synthetic: which files are its pairs, and its record

def _synthetic_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _record(root):
    return root / ".fastp2p-synthetic-train.json"


@pytest.mark.parametrize("name", ["12.jpg", "0000001.png", "00000001.jpg"])
def test_files_not_named_exactly_like_pairs_are_the_users_and_are_refused(tmp_path, name):
    folder = write_synthetic(tmp_path, 3, seed=0, progress=False)
    (folder / name).write_bytes(b"the user's")
    before = _synthetic_files(folder)
    with pytest.raises(DataError, match=f"holds 1 file other than synthetic pairs "
                                        f"\\(e.g. {name}\\)"):
        write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _synthetic_files(folder) == before


def test_a_pair_just_past_the_recorded_count_is_refused_and_kept(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    (folder / pair_name(2)).write_bytes(b"the user's")
    before = _synthetic_files(folder)
    with pytest.raises(DataError, match=f"e.g. {pair_name(2)}\\) that its record does not say "
                                        "fastp2p wrote"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _synthetic_files(folder) == before


def test_a_record_whose_seed_is_a_boolean_is_unreadable(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=1, progress=False)
    record = json.loads(_record(tmp_path).read_text())
    _record(tmp_path).write_text(json.dumps(dict(record, seed=True)))
    before = _synthetic_files(folder)
    with pytest.raises(DataError, match="is unreadable; write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _synthetic_files(folder) == before


@pytest.mark.parametrize("key", ["size", "quality"])
def test_pairs_recorded_at_another_size_or_quality_are_written_again(tmp_path, key, capsys):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    expected = _synthetic_files(folder)
    record = json.loads(_record(tmp_path).read_text())
    _record(tmp_path).write_text(json.dumps(dict(record, **{key: record[key] // 2})))
    # a pair file fastp2p wrote (it carries the pairs' JPEG comment), of the other set
    other = write_synthetic(tmp_path / "other", 1, seed=1, progress=False) / pair_name(0)
    (folder / pair_name(0)).write_bytes(other.read_bytes())
    write_synthetic(tmp_path, 2, seed=0, progress=False)
    assert _synthetic_files(folder) == expected
    assert json.loads(_record(tmp_path).read_text()) == record
    assert "writing the set again" in capsys.readouterr().err


def test_a_refused_smaller_count_keeps_the_record_of_the_larger_set(tmp_path):
    folder = write_synthetic(tmp_path, 4, seed=0, progress=False)
    expected = _synthetic_files(folder)
    with pytest.raises(DataError, match="past pair 1 .* pass its N again"):
        write_synthetic(tmp_path, 2, seed=0, progress=False)
    write_synthetic(tmp_path, 4, seed=0, progress=False)     # passing its N again works
    assert _synthetic_files(folder) == expected
    assert json.loads(_record(tmp_path).read_text())["pairs"] == 4


def test_pairs_of_equal_seed_plus_index_differ():
    assert not np.array_equal(synthetic_pair(0, 1, size=32), synthetic_pair(1, 0, size=32))
    assert not np.array_equal(synthetic_pair(2, 3, size=32), synthetic_pair(3, 2, size=32))


def _runs(line):
    """Lengths of the runs of True in a 1-D bool array, but a run from its first element (a
    shape's corner on the border can leave one pixel there)."""
    padded = np.concatenate([[False], line, [False]]).astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
    return (ends - starts)[starts > 0]


def test_the_outlines_in_a_are_at_least_two_pixels_wide_both_ways():
    for index in range(3):
        dark = synthetic_pair(5, index, size=64)[:, :64, 0] == 0
        runs = np.concatenate([_runs(row) for row in dark] + [_runs(col) for col in dark.T])
        assert len(runs) > 20 and runs.min() >= 2, index
