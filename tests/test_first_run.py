"""What a new user sees first: a short run learns (it beats the constant baseline, and an
untrained generator does not), the final sample is always written, `fastp2p test` prints the L1
against its baselines, and a packed dataset tests with the defaults."""
import re

import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from fastp2p.data.pack import pack_phase
from helpers.train_helpers import train_argv, write_aligned_dataset

SIZE = 32


def write_colourisation_dataset(root, pairs, seed):
    """A|B pairs: A a smooth random grayscale image, B its colouring by a fixed palette (dark
    -> red, light -> green, as a colourisation model learns what colour goes with what), so
    the mean image is a poor answer and the input tells everything."""
    rng = np.random.default_rng(seed)
    for phase, count in (("train", pairs), ("test", 4)):
        (root / phase).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            coarse = rng.integers(0, 256, (4, 4), dtype=np.uint8)
            gray = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BILINEAR))
            colour = np.stack([255 - gray, gray, np.full_like(gray, 128)], axis=2)
            pair = np.concatenate([np.repeat(gray[:, :, None], 3, axis=2), colour], axis=1)
            Image.fromarray(pair).save(root / phase / f"{index:03d}.png")
    return root


def scores(output: str) -> dict:
    """{"model": L1, "constant": ratio, "identity": ratio} as `fastp2p test` printed them."""
    model = float(re.search(r"model \(fake_B\)\s+([\d.]+)", output).group(1))
    constant = float(re.search(r"constant baseline\s+[\d.]+\s+\(model / constant ([\d.]+)",
                               output).group(1))
    identity = float(re.search(r"identity baseline\s+[\d.]+\s+\(model / identity ([\d.]+)",
                               output).group(1))
    return {"model": model, "constant": constant, "identity": identity}


def train_then_test(data, root, capsys, *train_options):
    common = ["--dataroot", str(data), "--checkpoints_dir", str(root / "ckpt"), "--name", "c",
              "--netG", f"unet_{SIZE}", "--ngf", "8", "--num_threads", "0"]
    assert main(["train", *common, "--ndf", "8", "--load_size", "36", "--crop_size",
                 str(SIZE), "--batch_size", "4", "--n_epochs", "4", "--n_epochs_decay", "2",
                 "--no_dropout", "--lr", "2e-3", *train_options]) == 0
    capsys.readouterr()
    assert main(["test", *common, "--load_size", str(SIZE), "--crop_size", str(SIZE),
                 "--results_dir", str(root / "results"), "--eval", "--no_dropout"]) == 0
    return scores(capsys.readouterr().out)


@pytest.fixture(scope="module")
def colourisation(tmp_path_factory):
    return write_colourisation_dataset(tmp_path_factory.mktemp("colour"), pairs=32, seed=5)


def test_a_short_run_beats_the_constant_baseline(colourisation, tmp_path, capsys):
    trained = train_then_test(colourisation, tmp_path, capsys)
    assert trained["constant"] < 0.7, trained


def test_an_untrained_generator_does_not(colourisation, tmp_path, capsys):
    # the same options with lr 0 (and one epoch, as it learns nothing anyway): the check above
    # can fail, and does without learning
    untrained = train_then_test(colourisation, tmp_path, capsys, "--lr", "0", "--n_epochs", "1",
                                "--n_epochs_decay", "0")
    assert untrained["constant"] > 0.9, untrained


def test_the_final_sample_is_written_whatever_display_freq(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=4, size=SIZE)
    # 2 epochs of 4 images, a sample every 3: after images 3 and 6, and after the last one
    assert main(train_argv(data, tmp_path / "ckpt")) == 0
    steps = sorted({p.name.split("_")[1] for p in (tmp_path / "ckpt/tiny/web/images").iterdir()})
    assert steps == ["step0000003", "step0000006", "step0000008"]
    capsys.readouterr()
    # display_freq beyond the run: the final sample only, and the printed path holds it
    assert main(train_argv(data, tmp_path / "ckpt2", "--display_freq", "400")) == 0
    printed = re.search(r"samples:\s+(.+)", capsys.readouterr().out).group(1)
    assert sorted(p.name for p in (tmp_path / "ckpt2/tiny/web/images").iterdir()) == [
        f"epoch002_step0000008_{label}.png" for label in ("fake_B", "real_A", "real_B")]
    assert printed == str(tmp_path / "ckpt2/tiny/web/images")


def test_a_packed_dataset_trains_and_tests_with_the_default_load_size(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=4, size=SIZE)
    packed = tmp_path / "packed"
    for phase in ("train", "test"):
        pack_phase(data, packed, phase, load_size=40)
    argv = train_argv(packed, tmp_path / "ckpt")
    load_size = argv.index("--load_size")
    del argv[load_size:load_size + 2]               # no --load_size: the pack's 40 is used
    assert main(argv) == 0
    assert "--load_size 40 (not the default 286)" in capsys.readouterr().out
    other_mode = ["--dataset_mode", "two_folders"]
    assert main(train_argv(packed, tmp_path / "other_mode") + other_mode) == 0
    assert "--dataset_mode two_folders does not apply" in capsys.readouterr().out
    test = ["test", "--dataroot", str(packed), "--checkpoints_dir", str(tmp_path / "ckpt"),
            "--name", "tiny", "--netG", f"unet_{SIZE}", "--ngf", "4", "--crop_size", str(SIZE),
            "--num_threads", "0"]

    def translated(*options):
        results = tmp_path / f"results{len(list(tmp_path.glob('results*')))}"
        assert main(test + ["--results_dir", str(results), *options]) == 0
        images = sorted((results / "tiny").rglob("*.png"))
        assert images
        return {path.name: np.asarray(Image.open(path)) for path in images}, \
            capsys.readouterr().out

    # the reference's test reads each whole image at --crop_size (load = crop): the pairs
    # packed at 40 are resized again to 32, the same whatever the seed
    first, out = translated()
    assert "packed at load_size 40: each half is resized again to 32" in out
    assert "model (fake_B)" in out
    second, _ = translated("--seed", "7")
    explicit, _ = translated("--load_size", str(SIZE))
    # the pack stores pairs: another --dataset_mode reads the same ones, and says so
    other_mode, out = translated("--dataset_mode", "two_folders")
    assert "--dataset_mode two_folders does not apply" in out
    for other in (second, explicit, other_mode):
        assert first.keys() == other.keys()
        assert all(np.array_equal(first[name], other[name]) for name in first)
    # a --load_size above the crop asks for the reference's random crops of the stored pairs
    cropped, _ = translated("--load_size", "40")
    assert any(not np.array_equal(first[name], cropped[name]) for name in first
               if "real_A" in name)
    # a size the pack cannot give (above what it stores) is refused, naming both sizes
    assert main(test + ["--load_size", "48", "--results_dir", str(tmp_path / "refused")]) == 1
    assert "packed at load_size 40, smaller than --load_size 48" in capsys.readouterr().err


def test_task_chooses_an_embedded_dataset_and_conflicts_with_dataroot(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=4, size=SIZE)
    assert main(train_argv(data, tmp_path / "ckpt", "--task", "edges2photo")) == 2
    error = capsys.readouterr().err
    assert "--task edges2photo" in error and "--dataroot" in error and error.count("\n") == 1


def test_l1_scores_average_per_image_and_name_a_missing_baseline():
    import torch
    from fastp2p.train.evaluation import L1Scores

    real_B = torch.zeros(1, 3, 2, 2)
    scores = L1Scores(True, torch.full((3, 2, 2), 0.5), "the mean of 2 train images")
    scores.add(torch.full((1, 3, 2, 2), 0.8), torch.full((1, 3, 2, 2), 0.1), real_B)
    scores.add(torch.full((1, 3, 2, 2), 0.4), torch.full((1, 3, 2, 2), 0.3), real_B)
    assert scores.images == 2
    assert scores.mean("model") == pytest.approx(0.2)
    assert scores.mean("identity") == pytest.approx(0.6)
    assert scores.mean("constant") == pytest.approx(0.5)
    report = scores.report()
    assert "model / constant 0.40" in report and "model / identity 0.33" in report
    missing = L1Scores(False, None, "no train split to average")
    missing.add(real_B, real_B, real_B)
    report = missing.report()
    assert "not computed: no train split to average" in report and "identity" not in report
