"""Images of more than 8 bits per channel: 16-bit grayscale (PNG modes I;16 / I;16B, 16-bit
PGM/PPM that Pillow opens as mode I) is scaled to 8 bits, the same in the folders and in a pack,
instead of clipped to white; 32-bit integer and float images are refused in one line naming the
file and mode; 8-bit images decode as before."""
import io

import numpy as np
import pytest
from PIL import Image

from fastp2p.data.errors import DataError
from fastp2p.data.folders import decode_rgb, open_rgb, read_info, scan_aligned
from fastp2p.data.pack import load_pair
from fastp2p.data.transforms import Preprocess


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


def _pgm(raw: np.ndarray, maxval: int) -> bytes:
    height, width = raw.shape
    return f"P5\n{width} {height}\n{maxval}\n".encode() + raw.astype(">u2").tobytes()


@pytest.mark.parametrize("maxval", [65535, 1023])
def test_16_bit_pgm_is_scaled_to_8_bits(tmp_path, maxval):
    raw = np.random.default_rng(maxval).integers(0, maxval + 1, (6, 10)).astype(np.uint16)
    raw[0, :2] = [0, maxval]
    path = tmp_path / "p.ppm"
    path.write_bytes(_pgm(raw, maxval))
    with Image.open(path) as img:
        assert (img.mode, img.format) == ("I", "PPM")
        # Pillow scales 0..maxval to 0..65535: the I;16 rule (round(v / 257)) then applies
        wide = np.asarray(img).astype(np.int64)
        assert wide[0, 0] == 0 and wide[0, 1] == 65535
        got = np.asarray(decode_rgb(img))
    assert got.dtype == np.uint8 and got.shape == (6, 10, 3)
    assert np.array_equal(got[..., 0], ((wide + 128) // 257).astype(np.uint8))
    assert np.array_equal(got[..., 0], got[..., 2])
    # the true value raw * 255 / maxval, within the two roundings
    assert np.abs(got[..., 0] - raw.astype(np.float64) * 255 / maxval).max() <= 0.51
    assert got[0, :2, 0].tolist() == [0, 255]
    assert read_info(path, decode=True).size == (10, 6)  # read and checked, not refused
    assert np.array_equal(np.asarray(open_rgb(path)), got)


def test_a_32_bit_integer_image_is_still_refused_as_such():
    buffer = io.BytesIO()
    Image.fromarray((np.arange(12, dtype=np.int32) * 100000).reshape(3, 4)).save(buffer, "TIFF")
    with Image.open(buffer) as img:
        assert img.mode == "I"
        with pytest.raises(DataError, match="32-bit integer image"):
            decode_rgb(img)
