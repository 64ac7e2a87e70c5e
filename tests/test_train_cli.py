"""`fastp2p train` and `fastp2p test` end to end on a tiny dataset; --help; bad options."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.cli import build_parser, main
from fastp2p.reference import UnetGenerator, get_norm_layer
from helpers.train_helpers import one_line, train_argv, write_aligned_dataset

TRAIN_OPTIONS = ("--netG", "--netD", "--n_layers_D", "--ngf", "--ndf", "--norm", "--no_dropout",
                 "--gan_mode", "--lambda_L1", "--lr", "--beta1", "--batch_size", "--init_type",
                 "--init_gain", "--continue_train", "--epoch_count", "--save_epoch_freq",
                 "--save_latest_freq", "--name", "--checkpoints_dir", "--n_epochs",
                 "--n_epochs_decay", "--lr_policy", "--display_freq", "--precision", "--graphs",
                 "--no-graphs", "--channels-last", "--seed", "--log-every", "--device",
                 "--dataroot", "--direction", "--crop_size")
TEST_OPTIONS = ("--results_dir", "--eval", "--num_test", "--phase", "--epoch", "--name",
                "--channels-last", "--no-channels-last")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = write_aligned_dataset(root / "data")
    assert main(train_argv(data, root / "ckpt", "--save_epoch_freq", "1")) == 0
    return root, data


def test_train_writes_reference_checkpoints_logs_plot_and_page(trained):
    root, _ = trained
    run = root / "ckpt" / "tiny"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "1_net_G.pth", "2_net_G.pth",
                 "latest_train_state.pth", "train_opt.txt", "loss_log.csv", "web/loss.png",
                 "web/index.html"):
        assert (run / name).is_file(), name
    # a plain state_dict the reference generator loads as is
    reference = UnetGenerator(3, 3, 5, ngf=4, norm_layer=get_norm_layer("batch"),
                              use_dropout=True)
    reference.load_state_dict(torch.load(run / "latest_net_G.pth", weights_only=True))
    with open(run / "loss_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert [float(r["lr"]) for r in rows] == [2e-4] * 4 + [1e-4] * 4  # linear decay, epoch 2
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("G_GAN", "G_L1", "D_real"))
    samples = sorted(p.name for p in (run / "web/images").iterdir())
    assert len(samples) == 3 * 3  # display_freq 3 over 8 images: after images 3, 6 and 8 (last)
    page = (run / "web/index.html").read_text()
    assert "loss.png" in page and all(f"images/{s}" in page for s in samples)


def test_test_command_writes_triplets_and_index(trained, capsys):
    root, data = trained
    argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(root / "ckpt"),
            "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
            "--crop_size", "32", "--num_threads", "0", "--results_dir", str(root / "results"),
            "--num_test", "3"]
    assert main(argv + ["--eval"]) == 0
    images = root / "results/tiny/test_latest/images"
    names = sorted(p.name for p in images.iterdir())
    assert names == sorted(f"{i:03d}_{k}.png" for i in range(3)
                           for k in ("real_A", "fake_B", "real_B"))
    assert Image.open(images / "000_fake_B.png").size == (32, 32)
    assert "000_fake_B.png" in (root / "results/tiny/test_latest/index.html").read_text()
    evaluated = np.asarray(Image.open(images / "000_fake_B.png"))
    assert main(argv + ["--eval"]) == 0  # eval mode: deterministic
    assert np.array_equal(evaluated, np.asarray(Image.open(images / "000_fake_B.png")))
    assert main(argv + ["--eval", "--no-channels-last"]) == 0  # NCHW: the same image (rounding)
    nchw = np.asarray(Image.open(images / "000_fake_B.png")).astype(int)
    assert np.abs(nchw - evaluated.astype(int)).max() <= 1
    assert main(argv) == 0  # train mode, as the reference's default: batch statistics
    assert not np.array_equal(evaluated, np.asarray(Image.open(images / "000_fake_B.png")))
    assert "open:" in capsys.readouterr().out


def test_help_explains_every_option(capsys):
    parser = build_parser()
    for command, expected in (("train", TRAIN_OPTIONS), ("test", TEST_OPTIONS)):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        for option in expected:
            assert option in text, option
        subparser = parser._subparsers._group_actions[0].choices[command]
        undocumented = [a.dest for a in subparser._actions if not a.help]
        assert undocumented == []


def test_quick_profile_applies_only_without_dataroot_and_never_over_explicit_values():
    from fastp2p.train.options import resolve_quick_defaults
    parser = build_parser()
    quick = resolve_quick_defaults(parser.parse_args(["train"]))
    assert (quick.netG, quick.ngf, quick.crop_size, quick.n_epochs) == ("unet_64", 16, 64, 7)
    full = resolve_quick_defaults(parser.parse_args(["train", "--dataroot", "x"]))
    assert (full.netG, full.ngf, full.crop_size, full.n_epochs) == ("unet_256", 64, 256, 100)
    explicit = resolve_quick_defaults(parser.parse_args(["train", "--crop_size", "256",
                                                         "--ngf", "64"]))
    assert (explicit.crop_size, explicit.ngf, explicit.netG) == (256, 64, "unet_64")


@pytest.mark.parametrize("extra,message", [
    (["--netG", "resnet_9blocks"], "--netG must be"),
    (["--crop_size", "48"], "multiple of 32"),
    (["--precision", "bf16", "--device", "cpu"], "bf16"),
    (["--graphs", "--device", "cpu"], "cuda_graph"),
], ids=["netG", "crop", "bf16-cpu", "graphs-cpu"])
def test_bad_options_give_one_line_errors(tmp_path, capsys, extra, message):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt", *extra)) != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("gpu_ids, refused", [
    ("0", "--gpu_ids 0 means --device cuda:0, but --device cpu was given: keep one of them"),
    ("-1", "--precision bf16 (autocast, the CUDA fast path) needs a CUDA device, this run is on "
           "cpu; use --precision fp32"),
], ids=["gpu-named", "cpu-named"])
def test_device_cpu_with_gpu_ids_and_bf16(tmp_path, capsys, gpu_ids, refused):
    """`--device cpu --gpu_ids N --precision bf16` (mutation audit): neither device option
    wins; a GPU named by --gpu_ids contradicts --device cpu, said first (bf16 fits that GPU),
    whether or not a GPU is there; --gpu_ids -1 agrees with it, and bf16 is refused on the
    CPU. Exit 2, nothing written."""
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--device", "cpu", "--gpu_ids", gpu_ids,
                      "--precision", "bf16")
    assert main(argv) == 2
    assert one_line(capsys.readouterr().err) == f"fastp2p train: error: {refused}"
    assert not (tmp_path / "ckpt").exists()


def test_continue_train_without_a_checkpoint_says_what_to_do(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt", "--continue_train")) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_syncbatch_across_cpu_processes_is_an_option_error(tmp_path, capsys, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) on CPUs: exit 2 before the process group is joined or
    anything written (each rank raised from DDP wrapping before, exit 1 with a traceback)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt", "--norm", "syncbatch", "--device",
                           "cpu")) == 2
    assert "--norm syncbatch needs CUDA devices" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("netG, resnet", [("resnet_9blocks", True), ("unet_16", False)])
def test_a_generator_fastp2p_lacks_is_named_as_such(netG, resnet):
    from fastp2p.train.unet_names import unet_levels
    with pytest.raises(ValueError, match="power of two >= 32") as refused:
        unet_levels(netG)
    assert ("ResNet generators are not provided" in str(refused.value)) == resnet
