"""Messy image folders (the QA "images" report): file names that act on a terminal, FIFOs
named like images, one name twice in two_folders, Pillow's palette-transparency warning, the
advice of one error said once, and what pack checks before it writes."""
import io
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from helpers.data_helpers import (data_args, gradient_half, make_aligned, tiny_pack_args,
                                  write_ab, write_image)
from fastp2p.cli import main
from fastp2p.data import DataError, create_dataset
from fastp2p.data.folders import list_images, open_rgb

RED_ESCAPE = "\x1b[31m"


def _noise_jpeg_cut_in_its_pixels(path):
    """A JPEG whose header reads but whose pixels are cut short: found only by decoding it."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "JPEG", quality=95)
    path.write_bytes(data.getvalue()[:len(data.getvalue()) // 2])


def test_pack_checks_headers_up_front_and_decode_damage_at_its_phase(tmp_path, capsys):
    """Finding 1: --help and the README promised every image "read and checked" before the
    first phase is written, but only headers are: they now say so, and a truncated val image
    stops the run once train is packed, naming the file."""
    from fastp2p.data.pack_command import DESCRIPTION

    assert "headers read and checked" in " ".join(DESCRIPTION.split())
    make_aligned(tmp_path / "data", count=2, width=16, height=16)
    make_aligned(tmp_path / "data", count=1, width=16, height=16, phase="val")
    _noise_jpeg_cut_in_its_pixels(tmp_path / "data" / "val" / "cut.jpg")
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'data' / 'val' / 'cut.jpg'}: cannot decode this image" in err
    assert "--skip-bad" in err and (tmp_path / "out" / "train" / "index.json").is_file()


def _folder_with_escapes(root):
    make_aligned(root, count=2, width=16, height=16)
    (root / "train" / f"bad{RED_ESCAPE}RED\nline.jpg").write_bytes(b"not an image")
    (root / "train" / f"note{RED_ESCAPE}.webp").write_bytes(b"x")


def test_file_names_that_act_on_a_terminal_are_escaped_in_every_message(tmp_path, capsys):
    """Finding 2: a newline or an escape sequence in a file name reached the error line of
    train, test and pack raw (splitting it, or acting on the terminal), and train's --skip-bad
    list and the line of files left out."""
    _folder_with_escapes(tmp_path / "data")
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(tmp_path / "data"), "train")
    assert "bad\\x1b[31mRED\\nline.jpg: not a readable image" in str(caught.value)
    create_dataset(data_args(tmp_path / "data", "--skip-bad"), "train")
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("bad\\x1b[31mRED\\nline.jpg") == 2, err
    assert "note\\x1b[31m.webp" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_or_a_link_to_a_device_named_like_an_image_is_named(tmp_path, capsys):
    """Finding 3: they were left out (reading one could wait forever) without a word."""
    good = make_aligned(tmp_path, count=2, width=16, height=16)
    os.mkfifo(tmp_path / "train" / "frame.png")
    os.symlink(os.devnull, tmp_path / "train" / "null.jpg")
    assert list_images(tmp_path / "train") == good
    assert (f"ignoring 2 special files in {tmp_path / 'train'} named like an image (a FIFO, "
            "socket or device, or a link to one: reading it could wait forever): frame.png, "
            "null.jpg") in capsys.readouterr().err


def test_two_files_of_one_name_pair_with_nothing(tmp_path, capsys):
    """Finding 4: of A/dup.jpg and A/dup.png, --skip-bad skipped dup.png as ambiguous but
    trained on dup.jpg with B/dup.png, chosen by sort order without a word."""
    train = tmp_path / "train"
    for name in ("A/dup.png", "A/dup.jpg", "B/dup.png", "A/ok.png", "B/ok.png"):
        write_image(train / name, gradient_half(12, 12, 0))
    dataset = create_dataset(data_args(tmp_path, "--dataset_mode", "two_folders", "--skip-bad"),
                             "train")
    assert [sample["A_paths"] for sample in dataset] == [str(train / "A" / "ok.png")]
    err = capsys.readouterr().err
    assert "skipped 3 bad files" in err
    assert (f"{train / 'A' / 'dup.jpg'}: has the same name as dup.png, so its pair is "
            "ambiguous") in err
    assert f"{train / 'A' / 'dup.png'}: has the same name as dup.jpg" in err
    assert (f"{train / 'B' / 'dup.png'}: its partner is ambiguous: {train / 'A'} holds 2 files "
            "named dup.*") in err


def test_a_palette_image_with_transparency_in_bytes_reads_without_pillows_warning(tmp_path):
    """Finding 5: Pillow's "Palette images with Transparency expressed in bytes" warning came
    through with Pillow's source line and no file name; the pixels stay convert("RGB")'s."""
    indices = np.random.default_rng(0).integers(0, 3, (16, 32), dtype=np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 90, 200] + [0] * 759)
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=bytes([0, 128, 255]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = np.asarray(open_rgb(path))
    assert not caught, [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(pixels, np.asarray(Image.open(path).convert("RGB")))


def test_the_too_small_to_round_error_advises_once(tmp_path):
    """Finding 6: "...to round to a multiple of 4; remove it; fix or remove it, or pass
    --skip-bad"."""
    make_aligned(tmp_path, count=2, width=16, height=16)
    bad = write_ab(tmp_path / "train" / "sliver.png", 16, 2)
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(tmp_path, "--preprocess", "none"), "train")
    message = str(caught.value)
    assert message.startswith(f"{bad}: 16x2 is too small to round to a multiple of 4; ")
    assert message.count("remove it") == 1, message
