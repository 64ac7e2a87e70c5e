"""Images named .pgm, .pbm and .pnm (Netpbm, as Pillow reads them) are found by the image
folders and packed, not left out as unknown files; a 16-bit PGM is scaled to 8 bits."""
import numpy as np
import pytest

from fastp2p.data.folders import open_rgb, scan_aligned, scan_two_folders
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess

SIDE = 6


def _pgm16(raw: np.ndarray, maxval: int) -> bytes:
    height, width = raw.shape
    return f"P5\n{width} {height}\n{maxval}\n".encode() + raw.astype(">u2").tobytes()


def _pbm(bits: np.ndarray) -> bytes:
    """Plain (P1) PBM: 1 is black."""
    height, width = bits.shape
    rows = "\n".join(" ".join(str(int(b)) for b in row) for row in bits)
    return f"P1\n{width} {height}\n{rows}\n".encode()


def _pnm_gray8(values: np.ndarray) -> bytes:
    height, width = values.shape
    return f"P5\n{width} {height}\n255\n".encode() + values.astype(np.uint8).tobytes()


def test_16_bit_pgm_pairs_are_scanned_and_packed(tmp_path, capsys):
    rng = np.random.default_rng(11)
    phase = tmp_path / "root" / "train"
    phase.mkdir(parents=True)
    expected = []
    for i, maxval in enumerate((65535, 1023, 4095)):
        raw = rng.integers(1, maxval, (SIDE, 2 * SIDE)).astype(np.uint16)
        path = phase / f"{i}.pgm"
        path.write_bytes(_pgm16(raw, maxval))
        # each value to 8 bits: raw * 255 / maxval within the two roundings, never all zero
        rgb = np.asarray(open_rgb(path))
        assert np.abs(rgb[..., 0] - raw * 255.0 / maxval).max() <= 0.51 and rgb.any()
        expected.append(rgb)
    config = Preprocess(load_size=SIDE, crop_size=SIDE)
    found = scan_aligned(phase, config, skip_bad=False, progress=False)
    assert [p.name for p in found] == ["0.pgm", "1.pgm", "2.pgm"]
    assert "ignoring" not in capsys.readouterr().err

    index = pack_phase(tmp_path / "root", tmp_path / "out", "train", load_size=SIDE,
                       progress=False)
    assert [a for a, _ in index["sources"]] == ["train/0.pgm", "train/1.pgm", "train/2.pgm"]
    stored = PackedDataset(tmp_path / "out" / "train", config, swap=False).read_batch([0, 1, 2])
    # load_size is the image's own size, so the pack's resize changes nothing
    assert np.array_equal(stored.numpy(), np.stack(expected))


@pytest.mark.parametrize("a_name, b_name", [("x.pbm", "x.pnm"), ("x.pnm", "x.pgm")])
def test_two_folders_pair_netpbm_files_by_name(tmp_path, a_name, b_name):
    rng = np.random.default_rng(5)
    writers = {".pbm": lambda: _pbm(rng.integers(0, 2, (SIDE, SIDE))),
               ".pnm": lambda: _pnm_gray8(rng.integers(1, 256, (SIDE, SIDE))),
               ".pgm": lambda: _pnm_gray8(rng.integers(1, 256, (SIDE, SIDE)))}
    for side, name in (("A", a_name), ("B", b_name)):
        (tmp_path / "train" / side).mkdir(parents=True)
        (tmp_path / "train" / side / name).write_bytes(writers[name[-4:]]())
    pairs = scan_two_folders(tmp_path / "train", Preprocess(load_size=SIDE, crop_size=SIDE),
                             skip_bad=False, progress=False)
    assert [(a.name, b.name) for a, b in pairs] == [(a_name, b_name)]
    for path in pairs[0]:
        assert np.asarray(open_rgb(path)).shape == (SIDE, SIDE, 3)
