"""The reference implementation's commands run after changing their first word: every option of
its options/base_options.py, train_options.py and test_options.py parses, and each one maps as
fastp2p.train.reference_options says (or is named as ignored, in one line)."""
import pytest
import torch

import fastp2p.train.reference_options as reference_options
from fastp2p.cli import build_parser, main
from fastp2p.train.reference_options import apply_reference_options
from helpers.train_helpers import (applied_options, parsed_options, tiny_test_argv, train_argv,
                                   write_aligned_dataset)

# Every option of the reference's option files, with a value its parser takes.
REFERENCE_BASE = [
    ("--dataroot", "d"), ("--name", "n"), ("--use_wandb",), ("--wandb_project_name", "p"),
    ("--gpu_ids", "-1"), ("--checkpoints_dir", "c"), ("--model", "pix2pix"),
    ("--input_nc", "3"), ("--output_nc", "3"), ("--ngf", "64"), ("--ndf", "64"),
    ("--netD", "basic"), ("--netG", "unet_256"), ("--n_layers_D", "3"), ("--norm", "batch"),
    ("--init_type", "normal"), ("--init_gain", "0.02"), ("--no_dropout",),
    ("--dataset_mode", "aligned"), ("--direction", "BtoA"), ("--serial_batches",),
    ("--num_threads", "4"), ("--batch_size", "1"), ("--load_size", "286"),
    ("--crop_size", "256"), ("--max_dataset_size", "100"), ("--preprocess", "resize_and_crop"),
    ("--no_flip",), ("--display_winsize", "256"), ("--epoch", "latest"), ("--load_iter", "0"),
    ("--verbose",), ("--suffix", ""),
]
REFERENCE_TRAIN = [
    ("--display_freq", "400"), ("--display_ncols", "4"), ("--display_id", "1"),
    ("--display_server", "http://localhost"), ("--display_env", "main"),
    ("--display_port", "8097"), ("--update_html_freq", "1000"), ("--print_freq", "100"),
    ("--no_html",), ("--save_latest_freq", "5000"), ("--save_epoch_freq", "5"),
    ("--save_by_iter",), ("--continue_train",), ("--epoch_count", "1"), ("--phase", "train"),
    ("--n_epochs", "100"), ("--n_epochs_decay", "100"), ("--beta1", "0.5"), ("--lr", "0.0002"),
    ("--gan_mode", "vanilla"), ("--pool_size", "0"), ("--lr_policy", "linear"),
    ("--lr_decay_iters", "50"), ("--lambda_L1", "100"),  # pix2pix_model.py's training option
]
REFERENCE_TEST = [
    ("--results_dir", "./results/"), ("--aspect_ratio", "1.0"), ("--phase", "test"),
    ("--eval",), ("--num_test", "50"),
    ("--model_suffix", "_A"),  # test_model.py's test option
]


@pytest.mark.parametrize("command,options", [("train", REFERENCE_BASE + REFERENCE_TRAIN),
                                             ("test", REFERENCE_BASE + REFERENCE_TEST)])
def test_every_reference_option_parses(command, options):
    for option in options:
        parsed_options(command, *option)


# The reference's canonical pix2pix commands (README, scripts/train_pix2pix.sh,
# scripts/test_pix2pix.sh, its Colab notebook), first word changed.
CANONICAL = [
    "train --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --direction BtoA",
    "train --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --netG unet_256 "
    "--direction BtoA --lambda_L1 100 --dataset_mode aligned --norm batch --pool_size 0",
    "train --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --direction BtoA "
    "--display_id -1 --gpu_ids -1",
    "train --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --direction BtoA "
    "--gpu_ids -1 --display_id 0 --use_wandb",
    "test --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --direction BtoA",
    "test --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --netG unet_256 "
    "--direction BtoA --dataset_mode aligned --norm batch --gpu_ids -1",
]


@pytest.mark.parametrize("command", CANONICAL)
def test_canonical_reference_commands_parse_and_apply(command):
    args = parsed_options(*command.split())
    apply_reference_options(args, args.command if args.command == "train" else "test")
    assert args.model == "pix2pix" and args.dataroot == "./datasets/facades"
    if "--gpu_ids" in command:
        assert args.device == "cpu"


def test_gpu_ids_map_to_devices(monkeypatch):
    assert applied_options("train", "--gpu_ids", "-1")[0].device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert applied_options("train", "--gpu_ids", "0")[0].device == "cuda:0"
    assert applied_options("test", "--gpu_ids", "1")[0].device == "cuda:1"
    assert applied_options("train", "--gpu_ids=-1,0")[0].device == "cuda:0"  # negatives dropped
    with pytest.raises(ValueError, match=r"torchrun --nproc_per_node=2 -m fastp2p"):
        applied_options("train", "--gpu_ids", "0,1")
    with pytest.raises(ValueError, match="--device cuda:0, but --device cpu"):
        applied_options("train", "--gpu_ids", "0", "--device", "cpu")
    with pytest.raises(ValueError, match="comma-separated integers"):
        applied_options("train", "--gpu_ids", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="under torchrun"):
        applied_options("train", "--gpu_ids", "0")


def test_gpu_ids_without_a_gpu_say_how_to_use_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"no CUDA GPU is visible; use --gpu_ids -1"):
        applied_options("train", "--gpu_ids", "0")


def test_model_other_than_pix2pix_is_a_clear_error():
    assert applied_options("train", "--model", "pix2pix")[0].model == "pix2pix"
    for model in ("cycle_gan", "test", "colorization"):
        with pytest.raises(ValueError, match=f"--model {model}: fastp2p implements pix2pix"):
            applied_options("train", "--model", model)


def test_print_freq_sets_the_log_interval_in_images():
    assert applied_options("train")[0].log_every == 50
    assert applied_options("train", "--log-every", "7")[0].log_every == 7
    # (the quick profile's batch is 8: 100 images are 12 steps)
    assert applied_options("train", "--print_freq", "100", "--batch_size", "1")[0].log_every == 100
    assert applied_options("train", "--print_freq", "100", "--batch_size", "8")[0].log_every == 12
    assert applied_options("train", "--print_freq", "3", "--batch_size", "8")[0].log_every == 1
    with pytest.raises(ValueError, match="keep one of them"):
        applied_options("train", "--print_freq", "100", "--log-every", "5")


def test_print_freq_counts_the_images_of_every_process(monkeypatch):
    """Under torchrun a step trains --batch_size images on each process, and --print_freq
    counts all of them, as --display_freq and --save_latest_freq do."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert applied_options("train", "--print_freq", "4", "--batch_size", "1")[0].log_every == 2
    assert applied_options("train", "--print_freq", "100", "--batch_size", "8")[0].log_every == 6


def test_load_iter_suffix_and_phase():
    assert applied_options("test", "--load_iter", "400")[0].epoch == "iter_400"
    assert applied_options("test", "--load_iter", "0", "--epoch", "7")[0].epoch == "7"
    args, _ = applied_options("train", "--name", "f", "--suffix", "{netG}_size{load_size}",
                       "--dataroot", "d")
    assert args.name == "f_unet_256_size286"
    with pytest.raises(ValueError, match="--suffix '{nope}': 'nope' is not an option name"):
        applied_options("train", "--suffix", "{nope}")
    with pytest.raises(ValueError, match=r"--suffix '\{netG': not a format of option names"):
        applied_options("train", "--suffix", "{netG")
    assert applied_options("train", "--phase", "val")[0].phase == "val"


def test_ignored_options_are_named_in_one_line():
    assert applied_options("train")[1] is None
    _, line = applied_options("train", "--display_id", "0", "--display_port", "8097", "--pool_size",
                       "0", "--update_html_freq", "10")
    assert "\n" not in line
    assert line.startswith("ignored reference options: --display_id 0, --display_port 8097 "
                           "(no visdom display here")
    assert "--pool_size 0 (the reference's pix2pix model uses no image pool either: it sets 0)" \
        in line   # one level of parentheses
    assert "--update_html_freq 10" in line
    _, line = applied_options("test", "--aspect_ratio", "1.0", "--batch_size", "4")
    assert "--batch_size 4 (test translates one image at a time" in line


def test_help_explains_the_reference_options(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert text.count("fastp2p execution:") == 1  # one group, not two with the same title
    assert "reference options (accepted so its commands run unchanged)" in text
    for flag in ("--gpu_ids", "--print_freq", "--load_iter", "--verbose", "--display_id",
                 "--pool_size", "--use_wandb", "--tensorboard", "--save_by_iter", "--no_html"):
        assert flag in text


def test_unknown_option_shows_the_subcommand_usage(capsys):
    assert main(["train", "--no_such_option", "1"]) == 2
    err = capsys.readouterr().err
    assert "usage: fastp2p train" in err
    assert "fastp2p train: error: unrecognized arguments: --no_such_option 1" in err


def test_a_reference_training_command_runs_end_to_end(tmp_path, capsys):
    """Train with reference options (save by iteration, print networks, ignored visdom and pool
    options), then test the iteration checkpoint with --load_iter."""
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "4", "--model", "pix2pix",
                      "--gpu_ids", "-1", "--display_id", "0", "--pool_size", "0", "--verbose",
                      "--save_by_iter", "--no_html", "--print_freq", "2")
    at = argv.index("--log-every")
    del argv[at:at + 2]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("ignored reference options: --display_id 0 (no visdom") == 1
    assert "network G:" in out and "network D:" in out and "M parameters" in out
    run = tmp_path / "ckpt" / "tiny"
    assert (run / "iter_4_net_G.pth").is_file() and (run / "iter_8_net_G.pth").is_file()
    assert not (run / "web").exists()  # --no_html
    assert "samples:" not in out and "loss log:" in out
    steps = [line.split(",")[1] for line in (run / "loss_log.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "4", "6", "8"]  # --print_freq 2 images at batch 1
    test_argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0", "--results_dir",
                 str(tmp_path / "results"), "--num_test", "1", "--model", "pix2pix",
                 "--gpu_ids", "-1", "--load_iter", "4", "--aspect_ratio", "2.0"]
    assert main(test_argv) == 0
    out = capsys.readouterr().out
    assert "iter_4_net_G.pth" in out
    assert "ignored reference options" not in out
    # the reference test.py's folder: PHASE_EPOCH (the --epoch given) with _iterN added
    saved = tmp_path / "results/tiny/test_latest_iter4/images/000_fake_B.png"
    from PIL import Image
    assert Image.open(saved).size == (32, 64)  # --aspect_ratio 2: width H, height 2 W


def test_bad_reference_options_stop_with_exit_code_2(tmp_path, capsys):
    # a real dataset: train refuses a missing or empty split (exit 1) before these options
    write_aligned_dataset(tmp_path, pairs=1)
    assert main(["train", "--model", "cycle_gan", "--dataroot", str(tmp_path)]) == 2
    assert "error: --model cycle_gan: fastp2p implements pix2pix only" in capsys.readouterr().err
    # the reference's test model translates images without targets: in test, on those only
    assert main(["train", "--model", "test", "--dataroot", str(tmp_path)]) == 2
    assert "error: --model test: fastp2p implements pix2pix only" in capsys.readouterr().err
    assert main(["test", "--model", "test", "--dataset_mode", "aligned", "--dataroot",
                 str(tmp_path)]) == 2
    assert ("error: --model test --dataset_mode aligned: the test model translates images "
            "without targets" in capsys.readouterr().err)
    assert main(["train", "--gpu_ids", "0,1", "--dataroot", str(tmp_path)]) == 2
    assert "torchrun --nproc_per_node=2" in capsys.readouterr().err
    assert main(["test", "--gpu_ids", "0,1", "--dataroot", str(tmp_path)]) == 2  # one device
    assert "pass one id (--gpu_ids N)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "test"])
def test_the_model_and_gpu_ids_are_checked_once(tmp_path, monkeypatch, command):
    """Before torch loads, and not again: test asked it three times (its early check, its
    --model check before the split, apply_reference_options), train twice."""
    asked, check = [], reference_options.refuse_unsupported_values

    def counted(args, phase):
        asked.append(phase)
        check(args, phase)
    monkeypatch.setattr(reference_options, "refuse_unsupported_values", counted)
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=(command,))
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "0",
                      "--no_html")
    if command == "test":   # a run folder without a generator: refused after the options
        (tmp_path / "ckpt" / "tiny").mkdir(parents=True)
        argv = tiny_test_argv(data, tmp_path / "ckpt", tmp_path / "results")
    assert main(argv) == (0 if command == "train" else 1)
    assert asked == [command]
