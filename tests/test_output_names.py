"""`fastp2p test` names each image's outputs uniquely: the same file name in subfolders of the
phase folder, or with another extension, gets its own outputs (and its own row of the page)."""
import os

from fastp2p.cli import main
from fastp2p.train.result_names import output_name
from helpers.train_helpers import train_argv, write_aligned_dataset


def _train_then_test(tmp_path, data):
    """Train a tiny generator on ``data``, translate its test split; the results folder."""
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")) == 0
    results = tmp_path / "results"
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0", "--results_dir", str(results),
                 "--eval"]) == 0
    return results


def test_same_file_names_in_subfolders_get_their_own_outputs(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    for index, folder in enumerate(("test", "test/a", "test/b")):
        write_aligned_dataset(tmp_path / "tmp", pairs=1, phases=("x",), seed=index)
        (data / folder).mkdir(parents=True)
        (tmp_path / "tmp/x/000.png").rename(data / folder / "000.png")
    results = _train_then_test(tmp_path, data)
    images = results / "tiny" / "test_latest" / "images"
    names = ("000", "a_000", "b_000")   # the first keeps its stem, as before
    assert sorted(path.name for path in images.iterdir()) == sorted(
        f"{name}_{label}.png" for name in names for label in ("real_A", "fake_B", "real_B"))
    real = [(images / f"{name}_real_A.png").read_bytes() for name in names]
    assert len(set(real)) == 3
    page = (results / "tiny" / "test_latest" / "index.html").read_text()
    assert all(page.count(f"images/{name}_real_A.png") == 1 for name in names)


def test_output_names_stay_unique_in_every_collision(tmp_path):
    phase = tmp_path / "test"
    taken = set()
    paths = [phase / "1.png", phase / "1.jpg", phase / "1.bmp", phase / "a" / "1.png",
             phase / "a_1.png", tmp_path / "elsewhere" / "1.png"]
    assert [output_name(path, phase, taken) for path in paths] == \
        ["1", "1-2", "1-3", "a_1", "a_1-2", "elsewhere_1"]
    assert output_name(phase / "2.png", None, taken) == "2"


def test_names_too_long_for_a_file_are_shortened_and_stay_unique(tmp_path):
    """A 240-byte stem failed `fastp2p test` at its image (the temporary file's name passed the
    file system's 255 bytes), after the images before it were written."""
    phase = tmp_path / "test"
    taken = set()
    long_a, long_b = "a" * 239 + "x", "a" * 239 + "y"
    names = [output_name(phase / f"{stem}.png", phase, taken)
             for stem in (long_a, long_b, "é" * 150, long_a)]
    assert len(set(names)) == 4
    for name in names:
        assert len(f".{name}-99_fake_B.png.tmp-4194304.png".encode()) <= 255, name
    assert names[0].startswith("a" * 150) and names[2].startswith("é" * 50)
    # a byte that is not UTF-8 (a Linux file name may hold one) is kept, not dropped
    undecodable = "\udcff" + "c" * 230
    kept = output_name(phase / f"{undecodable}.png", phase, taken)
    assert kept.startswith("\udcff" + "c" * 100)
    assert len(os.fsencode(f".{kept}_fake_B.png.tmp-4194304.png")) <= 255
    short = "b" * 200
    assert output_name(phase / f"{short}.png", phase, taken) == short


def test_a_long_image_name_is_translated(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train", "test"))
    long_name = "n" * 240 + ".png"
    (data / "test" / "000.png").rename(data / "test" / long_name)
    results = _train_then_test(tmp_path, data)
    images = sorted((results / "tiny" / "test_latest" / "images").iterdir())
    assert len(images) == 3 and all(path.name.startswith("n" * 150) for path in images)
