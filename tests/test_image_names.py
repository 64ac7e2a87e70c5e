"""The image folders take the reference's image names (.jpg .jpeg .png .ppm .bmp .tif .tiff, any
case) and leave other files out, naming them: a stray depth.pgm or mask.pbm beside the pairs is
skipped as the reference skips it (reading it as an image refused the whole folder, or paired a
mask in two_folders mode)."""
import numpy as np
from PIL import Image

from fastp2p.data.folders import list_images


def test_netpbm_names_other_than_ppm_are_left_out_and_named(tmp_path, capsys):
    pixels = np.zeros((4, 8, 3), np.uint8)
    for name in ("0.png", "1.PPM", "2.JPG"):
        Image.fromarray(pixels).save(tmp_path / name, format="PNG" if name == "0.png" else None)
    for name in ("depth.pgm", "mask.pbm", "any.pnm"):
        Image.fromarray(pixels[..., 0]).save(tmp_path / name, format="PPM")
    assert [path.name for path in list_images(tmp_path)] == ["0.png", "1.PPM", "2.JPG"]
    err = capsys.readouterr().err
    assert all(name in err for name in ("depth.pgm", "mask.pbm", "any.pnm"))
