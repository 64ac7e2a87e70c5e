"""``fastp2p test --aspect_ratio`` resizes each saved image as the reference's util.save_image
does (bicubic; its sizes as written: width H and height W * ratio above 1, width H / ratio and
height W below 1)."""
import numpy as np
import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.reports import save_image, tensor_to_image

Image = pytest.importorskip("PIL.Image", reason="saving images needs Pillow (.[data])")


@pytest.mark.parametrize("ratio, size", [(1.0, (12, 8)), (2.0, (8, 24)), (1.5, (8, 18)),
                                         (0.5, (16, 12)), (0.3, (26, 12))])
def test_saved_image_resized_as_the_reference(tmp_path, ratio, size):
    torch.manual_seed(0)
    image = torch.rand(3, 8, 12) * 2 - 1       # H 8, W 12: not square, so the axes show
    path = tmp_path / "x.png"
    save_image(image, path, ratio)
    saved = Image.open(path)
    assert saved.size == size                   # PIL sizes are (width, height)
    expected = Image.fromarray(tensor_to_image(image))
    if ratio != 1:
        expected = expected.resize(size, Image.BICUBIC)
    assert np.array_equal(np.asarray(saved), np.asarray(expected))


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_aspect_ratio_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--aspect_ratio", value])
    assert exit_.value.code == 2
    assert "--aspect_ratio: must be a finite number > 0" in capsys.readouterr().err
