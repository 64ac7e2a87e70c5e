"""A truncated image in the TRAIN split, which `fastp2p test` reads only for its optional constant
baseline, does not stop the test: the baseline is reported as not computed, in one line naming
the file (the old code aborted with a DataError whose advice was about training)."""
import numpy as np
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.reference import UnetGenerator, get_norm_layer
from helpers.train_helpers import write_aligned_dataset


def truncated_jpeg(path, size=32):
    """An A|B JPEG whose header reads but whose pixels are cut off (found at load time)."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, 2 * size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def test_a_truncated_train_image_skips_only_the_constant_baseline(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=3)
    bad = truncated_jpeg(data / "train" / "000_cut.jpg")   # sorted first: the mean reads it
    run = tmp_path / "ckpt" / "tiny"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    netG = UnetGenerator(3, 3, 5, ngf=4, norm_layer=get_norm_layer("batch"), use_dropout=True)
    torch.save(netG.state_dict(), run / "latest_net_G.pth")
    code = main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0", "--results_dir",
                 str(tmp_path / "results"), "--eval"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [line for line in captured.out.splitlines() if "constant baseline" in line]
    assert len(lines) == 1, captured.out
    assert "not computed" in lines[0] and str(bad) in lines[0], lines[0]
    assert "training" not in lines[0], lines[0]
    assert "model (fake_B)" in captured.out
    assert len(list((tmp_path / "results" / "tiny" / "test_latest" / "images").iterdir())) == 9
