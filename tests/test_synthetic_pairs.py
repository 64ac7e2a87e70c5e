"""``fastp2p pack --synthetic``: deterministic, structured pairs; resumable; packed end to end."""
import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.packed_index import read_index
from fastp2p.data.synthetic import SIZE, pair_name, synthetic_pair, write_synthetic


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_pairs_depend_only_on_seed_and_index():
    first = synthetic_pair(3, 5)
    assert first.shape == (SIZE, 2 * SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, synthetic_pair(3, 5))
    assert not np.array_equal(first, synthetic_pair(3, 6))
    assert not np.array_equal(first, synthetic_pair(4, 5))


def test_a_is_the_outline_of_the_shapes_in_b():
    pair = synthetic_pair(0, 1).astype(np.int16)
    edges, picture = pair[:, :SIZE], pair[:, SIZE:]
    assert set(np.unique(edges)) == {0, 255}
    assert np.all(edges[..., 0] == edges[..., 1]) and np.all(edges[..., 0] == edges[..., 2])
    on_line = edges[..., 0] == 0
    assert 0.005 < on_line.mean() < 0.3         # lines, not a blank or a filled image
    # B changes colour across A's lines much more than elsewhere
    step = np.abs(np.diff(picture, axis=1)).sum(-1)
    line_step = step[on_line[:, 1:] & on_line[:, :-1]].mean()
    assert line_step > 3 * step[~on_line[:, 1:] & ~on_line[:, :-1]].mean()


def test_written_folders_are_identical_and_resume(tmp_path):
    one = write_synthetic(tmp_path / "one", 5, seed=7, progress=False)
    two = write_synthetic(tmp_path / "two", 5, seed=7, workers=2, progress=False)
    assert sorted(p.name for p in one.iterdir()) == [pair_name(i) for i in range(5)]
    assert _files(one) == _files(two)
    with Image.open(one / pair_name(0)) as image:
        assert image.size == (2 * SIZE, SIZE) and image.format == "JPEG"
    expected = _files(one)
    (one / pair_name(2)).unlink()
    (one / pair_name(4)).write_bytes(b"")       # a file that exists is kept, as an earlier run
    write_synthetic(tmp_path / "one", 5, seed=7, progress=False)
    assert _files(one)[pair_name(2)] == expected[pair_name(2)]
    with pytest.raises(DataError, match="pairs past pair 2 .* larger --synthetic; pass its N"):
        write_synthetic(tmp_path / "one", 3, seed=7, progress=False)


def test_a_folder_of_ones_own_images_is_told_to_pack_without_synthetic(tmp_path):
    """No earlier --synthetic N to pass again: the files are the user's; nothing is removed."""
    own = tmp_path / "mine" / "train"
    own.mkdir(parents=True)
    (own / "photo.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError) as refused:
        write_synthetic(tmp_path / "mine", 3, progress=False)
    assert "photo.jpg" in str(refused.value) and "leave --synthetic out" in str(refused.value)
    assert "earlier" not in str(refused.value)
    assert [path.name for path in own.iterdir()] == ["photo.jpg"]


def _pack(*args, capsys):
    """``fastp2p pack ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(["pack", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_pack_synthetic_writes_then_packs(tmp_path, capsys):
    code, out, err = _pack("--synthetic", 6, tmp_path / "data", tmp_path / "packed",
                           "--load_size", 40, "--no-progress", "--workers", 2, capsys=capsys)
    assert code == 0, err
    assert "6 synthetic pairs (seed 0)" in out
    index = read_index(tmp_path / "packed" / "train")
    assert index["count"] == 6 and index["sources"][0] == ["train/" + pair_name(0)] * 2
    code, _, err = _pack("--synthetic", 0, tmp_path / "data", capsys=capsys)
    assert code == 2 and "--synthetic must be >= 1" in err
    code, _, err = _pack("--synthetic", 2, "--dataset_mode", "two_folders", tmp_path / "d",
                         capsys=capsys)
    assert code == 2 and "aligned" in err
