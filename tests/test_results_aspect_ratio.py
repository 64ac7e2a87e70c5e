"""``fastp2p test --aspect_ratio`` resizes each saved image as the reference's util.save_image
does (bicubic; its sizes as written: width H and height W * ratio above 1, width H / ratio and
height W below 1)."""
import re

import numpy as np
import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.sample_images import save_image, tensor_to_image

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
    assert main(["test", "--aspect_ratio", value]) == 2
    assert "--aspect_ratio: must be a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("ratio", [1e9, 1e-9, 1e300, 1e-300])
def test_an_aspect_ratio_making_an_absurd_image_is_a_value_error(tmp_path, ratio):
    message = f"--aspect_ratio {ratio:g} makes a 12x8 image"
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        save_image(torch.zeros(3, 8, 12), tmp_path / "x.png", ratio)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_test_refuses_such_an_aspect_ratio_before_it_starts(tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["test", "--aspect_ratio", "1e9", "--dataroot", str(tmp_path),
                 "--results_dir", str(results),
                 # not the working folder's ./checkpoints, which may hold a run
                 "--checkpoints_dir", str(tmp_path / "checkpoints")])
    assert code == 2
    error = capsys.readouterr().err
    assert "--aspect_ratio 1e+09 makes" in error and error.count("\n") == 1
    assert not results.exists()
