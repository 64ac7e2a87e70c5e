"""Data-pipeline defects a review reproduced (stop 17): each test fails on the code before the fix.

1. `fastp2p pack --synthetic N DIR` removed every pair-named file of DIR/train without a record
   saying fastp2p wrote it: a user's ffmpeg frames (0000000.jpg, ...) were deleted, exit 0.
2. 16-bit grayscale images (mode I;16) went through ``convert("RGB")``, which clips every value
   above 255 to white; 32-bit integer and float images (modes I, F) were clipped the same way.
4. The repack hint said `fastp2p pack DATAROOT OUT`: followed literally, it rebuilt the pack at
   the default load_size 286; and `pack` replaced a pack of another --load_size without a word.
"""
import json
import random
import shlex

import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.folders import decode_rgb, open_rgb, scan_aligned
from fastp2p.data.pack import load_pair
from fastp2p.data.packed import PackedDataset, read_index
from fastp2p.data.transforms import Preprocess
from fastp2p.data.synthetic import pair_name, write_synthetic


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _user_frames(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((8, 16, 3), 10 * i, np.uint8)).save(folder / pair_name(i))


# ---- 1. --synthetic removes only the pairs its record says fastp2p wrote --------------------

def test_synthetic_refuses_a_users_pair_named_frames(tmp_path, capsys):
    _user_frames(tmp_path / "mine" / "train", 20)
    before = _files(tmp_path / "mine" / "train")
    code = main(["pack", "--synthetic", "5", str(tmp_path / "mine"), str(tmp_path / "out"),
                 "--load_size", "36", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert _files(tmp_path / "mine" / "train") == before
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "mine" / "train") in lines[0]
    assert "write into an empty DATAROOT" in lines[0]
    assert not (tmp_path / "mine" / ".fastp2p-synthetic-train.json").exists()


@pytest.mark.parametrize("record", ["not json {", json.dumps({"seed": 0, "size": 256,
                                                              "quality": 90})])
def test_an_unreadable_or_countless_record_covers_no_files(tmp_path, record):
    """Garbage, or an older fastp2p's record (no pair count): nothing says which files it wrote."""
    _user_frames(tmp_path / "train", 3)
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(record)
    before = _files(tmp_path / "train")
    with pytest.raises(DataError, match="write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(tmp_path / "train") == before


def test_pair_named_files_past_the_recorded_count_are_refused(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 2
    (folder / pair_name(5)).write_bytes(b"a user's frame")
    before = _files(folder)
    with pytest.raises(DataError, match=f"{pair_name(5)}.*write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(folder) == before


def test_recorded_pairs_of_another_seed_are_still_replaced(tmp_path):
    write_synthetic(tmp_path / "one", 3, seed=1, progress=False)
    folder = write_synthetic(tmp_path, 3, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 3
    (folder / pair_name(2)).unlink()        # as if a removal was interrupted: none are foreign
    write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _files(folder) == _files(tmp_path / "one" / "train")


# ---- 2. 16-bit images are scaled to 8 bits, 32-bit ones refused, 8-bit ones unchanged ----------

def _random_pixels(shape, high, dtype, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def test_16_bit_grayscale_is_scaled_to_8_bits_in_folders_and_pack(tmp_path):
    wide = _random_pixels((6, 12), 65536, np.uint16)
    wide[0, :3] = [0, 65535, 257 * 7]
    (tmp_path / "train").mkdir()
    Image.fromarray(wide).save(tmp_path / "train" / "p.png")
    with Image.open(tmp_path / "train" / "p.png") as img:
        assert img.mode in ("I;16", "I")    # as Pillow opens 16-bit PNGs (old ones: I)
    expected = ((wide.astype(np.int64) + 128) // 257).astype(np.uint8)
    got = np.asarray(open_rgb(tmp_path / "train" / "p.png"))
    assert np.array_equal(got, np.repeat(expected[..., None], 3, axis=2))
    assert got[0, :3, 0].tolist() == [0, 255, 7]
    # pack decodes through the same function: at load_size 6 its resize keeps the pixels
    packed = load_pair(tmp_path, "train/p.png", "train/p.png", aligned=True, load_size=6)
    assert np.array_equal(packed, np.repeat(expected[..., None], 3, axis=2))


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_modes_in_memory(mode):
    wide = _random_pixels((4, 5), 65536, np.uint16, seed=1)
    img = Image.frombytes(mode, (5, 4), wide.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    expected = ((wide.astype(np.int64) + 128) // 257).astype(np.uint8)
    assert np.array_equal(np.asarray(decode_rgb(img))[..., 1], expected)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "1", "LA", "CMYK"])
def test_8_bit_images_decode_as_before(mode):
    rgb = Image.fromarray(_random_pixels((5, 7, 3), 256, np.uint8, seed=2))
    img = rgb.convert(mode)
    assert np.array_equal(np.asarray(decode_rgb(img)), np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("pixels, mode", [(np.arange(24, dtype=np.int32) * 5000, "I"),
                                          (np.linspace(0, 1, 24, dtype=np.float32), "F")])
def test_32_bit_images_are_refused_with_one_line_naming_file_and_mode(tmp_path, pixels, mode):
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "p.tif"
    Image.fromarray(pixels.reshape(4, 6)).save(path)
    for skip_bad in (False, True):
        config = Preprocess(load_size=4, crop_size=4)
        if skip_bad:        # listed and skipped; nothing else left to load
            with pytest.raises(DataError, match="every image was bad"):
                scan_aligned(tmp_path / "train", config, skip_bad=True, progress=False)
            continue
        with pytest.raises(DataError) as caught:
            scan_aligned(tmp_path / "train", config, skip_bad=False, progress=False)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and f"(mode {mode})" in message
    with pytest.raises(DataError, match=f"{path}: .*mode {mode}"):
        open_rgb(path)


# ---- 4. the repack hint is the command that made the pack; no silent load-size change --------

def _synthetic_pack(tmp_path, capsys, *extra):
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "6", str(data), str(out), "--load_size", "20",
                 "--pairs-per-shard", "2", "--no-progress", *extra]) == 0
    capsys.readouterr()
    return data, out


def _shard_bytes(phase_dir):
    return {path.name: path.read_bytes() for path in sorted(phase_dir.glob("shard-*.u8"))}


def test_the_repack_hint_run_as_printed_repairs_the_same_pack(tmp_path, capsys, monkeypatch):
    data, out = _synthetic_pack(tmp_path, capsys, "--skip-bad")
    good = _shard_bytes(out / "train")
    shard = out / "train" / "shard-00001.u8"
    damaged = bytearray(shard.read_bytes())
    damaged[5] ^= 1
    shard.write_bytes(bytes(damaged))
    monkeypatch.chdir(tmp_path / "data")        # the hint's paths are absolute
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    with pytest.raises(DataError) as caught:
        for i in range(len(dataset)):
            dataset.load(i, random.Random(i))
    hint = str(caught.value).split("re-run `")[1].split("`")[0]
    assert hint == (f"fastp2p pack {data.resolve()} {out.resolve()} --phase train --load_size 20 "
                    "--dataset_mode aligned --pairs-per-shard 2 --skip-bad")
    words = shlex.split(hint)
    assert words[:2] == ["fastp2p", "pack"]
    assert main(words[1:] + ["--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 20
    assert _shard_bytes(out / "train") == good


def test_the_hint_of_an_unreadable_index_names_what_it_cannot_know(tmp_path, capsys):
    _, out = _synthetic_pack(tmp_path, capsys)
    (out / "train" / "index.json").write_text("{ torn")
    with pytest.raises(DataError, match=r"re-run `fastp2p pack DATAROOT \S+packed --phase train "
                                        "--load_size SIZE_IT_WAS_PACKED_AT"):
        read_index(out / "train")


def test_pack_refuses_to_replace_a_pack_of_another_load_size(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    before = _shard_bytes(out / "train")
    index_before = (out / "train" / "index.json").read_bytes()
    assert main(["pack", str(data), str(out), "--no-progress"]) == 1    # default 286
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "train") in err[0]
    assert "--load_size 20" in err[0] and "--overwrite" in err[0]
    assert _shard_bytes(out / "train") == before
    assert (out / "train" / "index.json").read_bytes() == index_before
    # the same load size resumes (nothing to do); --overwrite replaces
    assert main(["pack", str(data), str(out), "--load_size", "20", "--no-progress"]) == 0
    assert main(["pack", str(data), str(out), "--load_size", "24", "--overwrite",
                 "--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 24


def test_an_interrupted_pack_of_another_load_size_is_refused_too(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    index = out / "train" / "index.json"
    index.unlink()      # as a run killed while packing: only its state file describes it
    (out / "train" / "pack-state.json").write_text(json.dumps({"load_size": 20, "shards": {}}))
    assert main(["pack", str(data), str(out), "--load_size", "24", "--no-progress"]) == 1
    assert "--load_size 20" in capsys.readouterr().err
