"""Bad input (DESIGN section 7): every case with a real broken file, a one-line DataError that
names the file (or folder) and says what to do; --skip-bad skips and lists, nothing else does."""
import numpy as np
import pytest
from PIL import Image

from helpers.data_helpers import data_args, gradient_half, make_aligned, write_ab, write_image
from fastp2p.data import DataError, create_dataloader, create_dataset

CROP = ("--preprocess", "crop", "--load_size", "16", "--crop_size", "12")


def noisy_jpeg(path, width=48, height=24):
    """A JPEG big enough that cutting it in half leaves the header but loses pixel data."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def truncate(path, keep_fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    return path


def text_as_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file, not an image\n")
    return path


def data_error(dataroot, *options, phase="train"):
    """The DataError of create_dataset, checked to be one line; returns its message."""
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(dataroot, *options), phase)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def assert_names_and_advises(message, path, advice):
    assert message.startswith(f"{path}:"), message
    assert advice in message, message


def test_missing_dataroot(tmp_path):
    message = data_error(tmp_path / "no-such-dataset")
    assert_names_and_advises(message, tmp_path / "no-such-dataset", "point it at a dataset folder")


def test_missing_phase_folder(tmp_path):
    make_aligned(tmp_path, count=1, phase="train")
    message = data_error(tmp_path, phase="test")
    assert_names_and_advises(message, tmp_path / "test", "--dataroot or pack's DATAROOT")


def test_empty_phase_folder(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("no images here")
    message = data_error(tmp_path)
    assert_names_and_advises(message, tmp_path / "train", "put the A|B images there")


def test_two_folders_missing_b(tmp_path):
    write_image(tmp_path / "train" / "A" / "x.png", gradient_half(8, 8, 0))
    message = data_error(tmp_path, "--dataset_mode", "two_folders")
    assert_names_and_advises(message, tmp_path / "train" / "B", "folder not found")


def test_two_folders_empty_a(tmp_path):
    (tmp_path / "train" / "A").mkdir(parents=True)
    write_image(tmp_path / "train" / "B" / "x.png", gradient_half(8, 8, 0))
    message = data_error(tmp_path, "--dataset_mode", "two_folders")
    assert_names_and_advises(message, tmp_path / "train" / "A", "put the A images there")


def test_a_and_b_subfolders_in_aligned_mode_point_to_two_folders(tmp_path):
    write_image(tmp_path / "train" / "A" / "x.png", gradient_half(8, 8, 0))
    write_image(tmp_path / "train" / "B" / "x.png", gradient_half(8, 8, 0))
    message = data_error(tmp_path)
    assert_names_and_advises(message, tmp_path / "train", "--dataset_mode two_folders")


def test_non_image_file_named_png(tmp_path):
    make_aligned(tmp_path, count=2, width=16, height=16)
    bad = text_as_png(tmp_path / "train" / "pair05.png")
    message = data_error(tmp_path, *CROP)
    assert_names_and_advises(message, bad, "not a readable image")
    assert "--skip-bad" in message


def test_an_image_past_pillows_decompression_bomb_limit_is_called_too_large_not_corrupt(
        tmp_path, monkeypatch):
    make_aligned(tmp_path, count=2, width=16, height=16)
    large = noisy_jpeg(tmp_path / "train" / "large.jpg")       # 48 x 24 = 1152 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)         # refused above 600
    message = data_error(tmp_path, *CROP)
    assert_names_and_advises(message, large, "image too large to decode")
    assert "corrupt" not in message and "decompression-bomb limit" in message


def test_jpeg_truncated_in_its_header_fails_at_creation(tmp_path):
    make_aligned(tmp_path, count=2, width=16, height=16)
    bad = truncate(noisy_jpeg(tmp_path / "train" / "cut.jpg"), keep_fraction=0.02)
    message = data_error(tmp_path, *CROP)
    assert message.startswith(f"{bad}:") and "--skip-bad" in message


def test_jpeg_truncated_in_its_pixels_fails_on_first_load_naming_it(tmp_path):
    make_aligned(tmp_path, count=2, width=24, height=24)
    bad = truncate(noisy_jpeg(tmp_path / "train" / "cut.jpg"))
    # the scan reads headers only (fast on big datasets); the first load decodes the pixels
    dataset = create_dataset(data_args(tmp_path, *CROP), "train")
    index = dataset.paths.index(str(bad))
    with pytest.raises(DataError) as caught:
        dataset[index]
    message = str(caught.value)
    assert "\n" not in message
    assert_names_and_advises(message, bad, "--skip-bad")
    # through the loader (the training path) it is the same one line, not a worker traceback
    loader = create_dataloader(dataset, 3, shuffle=False, num_workers=0, seed=0)
    with pytest.raises(DataError, match=f"^{bad}: cannot decode this image .*truncated"):
        list(loader)


def test_two_folders_names_that_do_not_pair(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / "train" / "A" / f"{name}.png", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "B" / "a.png", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "B" / "c.png", gradient_half(12, 12, 0))
    message = data_error(tmp_path, "--dataset_mode", "two_folders", *CROP)
    assert_names_and_advises(message, tmp_path / "train" / "A" / "b.png", "has no partner")
    assert "pair by name" in message and "(1 more bad file in" in message   # B/c.png as well


def test_two_folders_with_one_name_twice(tmp_path):
    write_image(tmp_path / "train" / "A" / "a.png", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "A" / "a.bmp", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "B" / "a.png", gradient_half(12, 12, 0))
    message = data_error(tmp_path, "--dataset_mode", "two_folders", *CROP)
    assert_names_and_advises(message, tmp_path / "train" / "A" / "a.bmp",
                             "rename all but one of them")


def test_two_folders_partners_of_different_sizes(tmp_path):
    write_image(tmp_path / "train" / "A" / "a.png", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "B" / "a.png", gradient_half(14, 12, 0))
    message = data_error(tmp_path, "--dataset_mode", "two_folders", *CROP)
    assert_names_and_advises(message, tmp_path / "train" / "A" / "a.png",
                             "resize them to the same size")


@pytest.mark.parametrize("preprocess", ["none", "scale_width"])
def test_mixed_sizes_where_the_preprocessing_keeps_sizes(tmp_path, preprocess):
    make_aligned(tmp_path, count=3, width=16, height=16)
    bad = write_ab(tmp_path / "train" / "tall.png", 16, 20)
    message = data_error(tmp_path, "--preprocess", preprocess, "--load_size", "16",
                         "--crop_size", "8")
    assert_names_and_advises(message, bad, f"16x20 becomes 16x20 with --preprocess {preprocess}, "
                                           "but most images become 16x16")
    assert "--preprocess resize_and_crop" in message


def test_mixed_sizes_are_fine_where_every_pair_is_resized(tmp_path):
    make_aligned(tmp_path, count=2, width=16, height=16)
    write_ab(tmp_path / "train" / "tall.png", 16, 20)
    dataset = create_dataset(data_args(tmp_path, "--load_size", "16", "--crop_size", "12"),
                             "train")
    assert {dataset[i]["A"].shape for i in range(3)} == {(3, 12, 12)}


def test_images_smaller_than_the_crop(tmp_path):
    make_aligned(tmp_path, count=2, width=16, height=16)
    small = write_ab(tmp_path / "train" / "small.png", 16, 10)
    message = data_error(tmp_path, *CROP)
    assert_names_and_advises(message, small, "16x10 is smaller than --crop_size 12")
    assert "--preprocess resize_and_crop or a smaller --crop_size" in message


def test_skip_bad_skips_and_lists_every_bad_file(tmp_path, capsys):
    good = make_aligned(tmp_path, count=3, width=16, height=16)
    train = tmp_path / "train"
    bad = [text_as_png(train / "text.png"),
           # cut inside its header at this size; test_dataset_folders_and_builds.py cuts one
           # in its pixels, found only by decoding
           truncate(noisy_jpeg(train / "cut.jpg", 32, 16)),
           write_ab(train / "small.png", 16, 10)]
    dataset = create_dataset(data_args(tmp_path, *CROP, "--skip-bad"), "train")
    assert dataset.paths == [str(p) for p in good]
    listing = capsys.readouterr().err
    assert f"skipped {len(bad)} bad files" in listing
    for path in bad:
        assert str(path) in listing
    # and every kept pair loads
    assert len(list(create_dataloader(dataset, 2, shuffle=False, num_workers=0, seed=0))) == 2


def test_skip_bad_in_two_folders_lists_the_unpaired(tmp_path, capsys):
    for name in ("a", "b"):
        write_image(tmp_path / "train" / "A" / f"{name}.png", gradient_half(12, 12, 0))
    write_image(tmp_path / "train" / "B" / "a.png", gradient_half(12, 12, 0))
    options = ("--dataset_mode", "two_folders", *CROP, "--skip-bad")
    dataset = create_dataset(data_args(tmp_path, *options), "train")
    assert len(dataset) == 1
    assert str(tmp_path / "train" / "A" / "b.png") in capsys.readouterr().err


def test_skip_bad_with_nothing_left(tmp_path):
    text_as_png(tmp_path / "train" / "one.png")
    message = data_error(tmp_path, "--skip-bad")
    assert_names_and_advises(message, tmp_path / "train", "every image was bad")


def test_without_skip_bad_the_first_bad_file_stops_it_and_the_rest_are_counted(tmp_path):
    make_aligned(tmp_path, count=2, width=16, height=16)
    text_as_png(tmp_path / "train" / "x1.png")
    text_as_png(tmp_path / "train" / "x2.png")
    message = data_error(tmp_path, *CROP)
    assert_names_and_advises(message, tmp_path / "train" / "x1.png", "(1 more bad file in")


def test_fastp2p_train_reports_a_file_broken_mid_epoch_in_one_line(tmp_path, capsys):
    from fastp2p.cli import main
    from helpers.train_helpers import train_argv, write_aligned_dataset

    write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    bad = truncate(noisy_jpeg(tmp_path / "data" / "train" / "000_cut.jpg", 64, 32))
    argv = train_argv(tmp_path / "data", tmp_path / "checkpoints", "--num_threads", "2",
                      "--serial_batches")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: cannot decode this image" in err
    assert "Traceback" not in err and "worker" not in err


def test_files_that_are_not_images_by_extension_are_named_not_silently_dropped(tmp_path, capsys):
    make_aligned(tmp_path, count=2, width=16, height=16)
    Image.fromarray(gradient_half(32, 16, 0)).save(tmp_path / "train" / "pair09.webp")
    (tmp_path / "train" / ".DS_Store").write_bytes(b"\0")          # hidden: not worth a word
    dataset = create_dataset(data_args(tmp_path, *CROP), "train")
    assert len(dataset) == 2
    err = capsys.readouterr().err
    assert "ignoring 1 file in" in err and "pair09.webp" in err and ".DS_Store" not in err


def test_a_sliver_that_preprocess_none_would_round_to_nothing(tmp_path):
    bad = write_ab(tmp_path / "train" / "sliver.png", 16, 2)
    message = data_error(tmp_path, "--preprocess", "none")
    assert_names_and_advises(message, bad, "16x2 is too small to round to a multiple of 4")


def test_a_macos_resource_fork_file_is_named_as_one(tmp_path):
    """QA r57: an AppleDouble ``._pair00.png`` (macOS metadata copied along with a dataset)
    stopped the run as "not a readable image" without a word of what it is. It is still read,
    as the reference reads dot-files."""
    make_aligned(tmp_path, count=2, width=16, height=16)
    fork = tmp_path / "train" / "._pair00.png"
    fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    message = data_error(tmp_path, *CROP)
    assert_names_and_advises(message, fork, "not a readable image")
    assert "macOS resource-fork file (AppleDouble)" in message and "dot_clean" in message
    assert "--skip-bad" in message


# outside torchrun (None), and a node's second and first process of a torchrun job (RANK,
# LOCAL_RANK): every process of a node scans the same images, so the node's first alone names
# them, with "rank N: " off rank 0 (as tests/test_train_refusals_once.py's notes)
@pytest.mark.parametrize("ranks, prefix", [(None, ""), (("1", "1"), None),
                                           (("2", "0"), "rank 2: ")])
def test_an_image_past_pillows_warning_limit_is_named_in_one_fastp2p_line(tmp_path, monkeypatch,
                                                                          capsys, ranks, prefix):
    """QA r57: a 10000x10000 PNG printed Pillow's raw DecompressionBombWarning and the line of
    Pillow's source that raised it; loading it again warned again."""
    import warnings

    if ranks:
        for name, value in zip(("WORLD_SIZE", "RANK", "LOCAL_RANK"), ("4", *ranks)):
            monkeypatch.setenv(name, value)
    make_aligned(tmp_path, count=2, width=16, height=16)        # 32 x 16 = 512 pixels each
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)         # warned above, refused above 600
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = create_dataset(data_args(tmp_path, *CROP), "train")
        dataset[0]
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    lines = capsys.readouterr().err.splitlines()
    assert lines == ([] if prefix is None else [
        f"{prefix}fastp2p: {tmp_path / 'train' / f'pair0{i}.png'}: 512 pixels, above Pillow's "
        "decompression-bomb warning limit of 300: read as it is (Pillow refuses twice that)"
        for i in range(2)]), lines
