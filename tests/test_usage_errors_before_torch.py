"""A command line that is wrong whatever the machine is refused before torch loads: an error
line (after the usage, for a wrong value), exit code 2 (1 for a --dataroot that is no folder,
as the dataset's other errors), at once. bench's option checks, pack's usage errors, --netG's
check, a mistyped --dataroot and train's options that do not fit each other (a --crop_size the
U-Net or the PatchGAN cannot take, --precision bf16 with --device cpu) were refused after
loading torch (5.3 s, 3.0 s, 6.2 s, 6-8 s and 6-10 s, nearly all of it the import)."""
import os
import subprocess
import sys

import pytest

# fastp2p.cli.main on argv, whose exit code becomes 3 where torch was loaded by the time the
# process exits (an atexit hook: a parser's error exits from inside main).
RUN = ("import atexit, os, sys\n"
       "atexit.register(lambda: 'torch' in sys.modules and os._exit(3))\n"
       "from fastp2p.cli import main\n"
       "sys.exit(main(sys.argv[1:]))\n")


# (argv, whether the error comes after the command's usage line: a wrong value, argparse's
# parser.error; options that do not fit together are said alone)
@pytest.mark.parametrize("argv, usage", [
    (["bench", "--sections", "x"], True),
    (["bench", "--steps", "0"], True),
    (["bench", "--peers", "warp-drive"], True),
    (["bench", "--quick", "--device", "cuda"], False),
    (["bench", "--device", "cpu", "--peers", "cuda-graph"], False),
    (["pack"], True),
    (["pack", "pairs", "packed", "--load_size", "0"], True),
    (["pack", "pairs", "packed", "--pairs-per-shard", "0"], True),
    (["pack", "--synthetic", "4"], True),
    (["train", "--netG", "resnet_9blocks"], False),
    (["test", "--netG", "unet_16"], False),
    (["train", "--task", "edges2photo", "--dataroot", "."], False),
    (["test", "--dataroot", ".", "--task", "gray2color"], False),
    (["train", "--model", "cycle_gan", "--dataroot", "."], False),
    (["train", "--gpu_ids", "0,1", "--dataroot", "."], False),
    (["train", "--device", "cpu", "--gpu_ids", "0", "--dataroot", "."], False),
    (["test", "--model", "cycle_gan", "--dataroot", "."], False),
    (["test", "--gpu_ids", "0,1", "--dataroot", "."], False),
    (["test", "--device", "cpu", "--gpu_ids", "0", "--dataroot", "."], False),
    (["train", "--dataroot", ".", "--name", "run\nlr: 5"], False),
], ids=["bench section", "bench steps", "bench peer", "bench quick on cuda",
        "bench graph on cpu", "pack without folders", "pack load size", "pack shard size",
        "pack synthetic without DATAROOT", "train netG", "test netG", "train task and dataroot",
        "test task and dataroot", "train model before its missing split",
        "train gpu ids before its missing split", "train cpu and a gpu before its missing split",
        "test model before its missing run", "test gpu ids before its missing run",
        "test cpu and a gpu before its missing run",
        "train name with a line break before its missing split"])
def test_refused_before_torch_loads(tmp_path, argv, usage):
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith(f"fastp2p {argv[0]}: error: "), result.stderr
    assert len(lines) == 1 + usage, result.stderr
    assert not usage or lines[0].startswith(f"usage: fastp2p {argv[0]} "), result.stderr


# each with a later refusal (no epoch to train, no section), so that a command that took the
# empty path stops at once with another error rather than train or benchmark
NOTHING_TO_RUN = {"train": ["--n_epochs", "0", "--n_epochs_decay", "0"],
                  "bench": ["--sections", "none"]}


@pytest.mark.parametrize("argv", [
    ["train", "--dataroot", ""], ["test", "--dataroot", ""], ["train", "--checkpoints_dir", ""],
    ["test", "--results_dir", ""], ["pack", "", "packed"], ["pack", "pairs", ""],
    ["pack", "--verify", ""], ["bench", "--out", ""], ["bench", "--benchmarks-dir", ""],
    ["bench", "--plot", ""]])
def test_an_empty_path_is_refused(tmp_path, argv):
    """``--dataroot ""`` trained on the embedded dataset with the full-size profile (the quick
    defaults took "" for a folder given, the data for none); other empty paths meant the
    current folder."""
    result = subprocess.run([sys.executable, "-c", RUN, *argv, *NOTHING_TO_RUN.get(argv[0], [])],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"fastp2p {argv[0]}: error: "), result.stderr
    assert "must be a path, got ''" in last, result.stderr


@pytest.mark.parametrize("command", ["train", "test"])
@pytest.mark.parametrize("dataroot, problem", [("missing", "--dataroot folder not found"),
                                               ("a_file", "--dataroot is a file, not a folder")])
def test_a_dataroot_that_is_no_folder_is_refused_before_torch_loads(tmp_path, command, dataroot,
                                                                   problem):
    (tmp_path / "a_file").write_text("not a dataset")
    result = subprocess.run([sys.executable, "-c", RUN, command, "--dataroot", dataroot],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"fastp2p {command}: error: {dataroot}: {problem}; point it at a " \
                            "dataset folder holding train/ (and val/, test/)\n"


@pytest.mark.parametrize("argv, problem", [
    (["train", "--dataroot"], "--dataroot folder not found"),
    (["test", "--dataroot"], "--dataroot folder not found"),
    (["pack", "--verify"], "not found"), (["pack", "out"], "DATAROOT folder not found")],
    ids=["train", "test", "pack-verify", "pack"])
@pytest.mark.parametrize("dataroot", [" ", "missing "], ids=["blank", "trailing-blank"])
def test_a_dataroot_with_blanks_at_its_ends_is_shown_in_quotes(tmp_path, argv, problem,
                                                               dataroot):
    """``--dataroot " "`` was said as "error:  : --dataroot folder not found": the value did
    not show."""
    command, *others = argv   # pack takes DATAROOT before OUT
    argv = [command, dataroot, *others] if others == ["out"] else [*argv, dataroot]
    result = subprocess.run([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert f"error: {dataroot!r}: {problem}; " in result.stderr, result.stderr


def _tiny_generator_file(checkpoints) -> list:
    """The options of a small generator whose weights this writes as the latest of the run
    experiment_name (the default --name) in ``checkpoints``."""
    import torch

    import fastp2p

    run = checkpoints / "experiment_name"
    run.mkdir(parents=True)
    torch.save(fastp2p.UNet(3, 3, 5, ngf=4).state_dict(), run / "latest_net_G.pth")
    return ["--netG", "unet_32", "--ngf", "4"]


# train refuses a --dataroot ending in a space before its split is looked for (train_opt.txt
# cannot record it): its blank-named folder is a no-break space
@pytest.mark.parametrize("command, dataroot", [("train", "\u00a0"), ("test", " ")],
                         ids=["train", "test"])
def test_the_missing_split_of_a_blank_named_dataroot_is_shown_in_quotes(tmp_path, command,
                                                                        dataroot):
    """A folder " " without train/ was said as "error:  /train: folder not found"."""
    (tmp_path / dataroot).mkdir()
    # test says a missing checkpoint first: it gets one to read
    generator = _tiny_generator_file(tmp_path / "ck") if command == "test" else []
    result = subprocess.run([sys.executable, "-m", "fastp2p", command, "--dataroot", dataroot,
                             "--checkpoints_dir", str(tmp_path / "ck"), *generator],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    split = os.path.join(dataroot, command)
    assert f"error: {split!r}: folder not found; " in result.stderr, result.stderr


@pytest.mark.parametrize("options, code, error", [
    (["--phase", "val"], 1, "data/val: folder not found; expected A|B images side by side"),
    (["--phase", "val", "--model", "cycle_gan"], 2, "--model cycle_gan: fastp2p implements "
                                                    "pix2pix only"),
], ids=["missing phase", "a model before its missing split"])
def test_test_s_missing_split_is_refused_before_torch_loads(tmp_path, options, code, error):
    """A mistyped --phase of test was said after torch's import (6 s); train's was not."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    generator = _tiny_generator_file(tmp_path / "checkpoints")
    result = subprocess.run([sys.executable, "-c", RUN, "test", "--dataroot", "data",
                             "--checkpoints_dir", "checkpoints", *generator, *options],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(f"fastp2p test: error: {error}"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_test_under_torchrun_is_refused_before_its_missing_split_and_torch(tmp_path):
    """The split (and --model) checks before torch loads came before the torchrun refusal:
    each of the job's processes said the missing split, exit 1."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    generator = _tiny_generator_file(tmp_path / "checkpoints")
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    result = subprocess.run([sys.executable, "-c", RUN, "test", "--dataroot", "data",
                             "--checkpoints_dir", "checkpoints", *generator, "--phase", "val"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("fastp2p test: error: fastp2p test translates in one process, on "
                             "one device, but torchrun started 2 (WORLD_SIZE=2), each of which "
                             "would translate every image into the same folder; run it without "
                             "torchrun (--device cuda:N or --gpu_ids N picks the GPU)\n")


def test_test_s_missing_split_is_refused_before_torch_where_the_set_has_a_manifest(tmp_path):
    """A set whose manifest is there but not its generator's file (a damaged set: the name and
    the epoch are right) is a checkpoint, as a resume counts it: its missing split is said
    before torch loads too, as where the generator's file is there."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "checkpoints" / "tiny").mkdir(parents=True)
    (tmp_path / "checkpoints" / "tiny" / "latest_checkpoint.json").write_text("{}")
    result = subprocess.run([sys.executable, "-c", RUN, "test", "--dataroot", "data",
                             "--checkpoints_dir", "checkpoints", "--name", "tiny", "--phase",
                             "val"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("fastp2p test: error: data/val: folder not found; "
                                    "expected A|B images side by side"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_test_says_a_missing_checkpoint_before_its_missing_split(tmp_path):
    """A --name typo (no generator file) is said first, as before the split was looked at
    before torch loads."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "fastp2p", "test", "--dataroot", "data",
                             "--checkpoints_dir", "checkpoints", "--phase", "val"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("fastp2p test: error: no checkpoint "
                                    "checkpoints/experiment_name/latest_net_G.pth: "), result.stderr


@pytest.mark.parametrize("options, error", [
    (["--crop_size", "48"], "--crop_size 48 must be a multiple of 256 for --netG unet_256"),
    (["--netD", "n_layers", "--n_layers_D", "7"],
     "--netD n_layers --n_layers_D 7 leaves no logit map of 256-pixel sides"),
    (["--epoch_count", "300"], "no epoch to train: --epoch_count 300 is past the last epoch"),
    (["--lr_policy", "cosine", "--n_epochs", "0"], "--lr_policy cosine anneals the lr"),
    (["--device", "cpu", "--precision", "bf16"],
     "--precision bf16 (autocast, the CUDA fast path) needs a CUDA device, this run is on cpu"),
    (["--device", "cpu", "--graphs"], "--graphs (cuda_graph) needs a CUDA device"),
], ids=["crop for the U-Net", "crop for the PatchGAN", "epoch count", "cosine", "bf16 on cpu",
        "graphs on cpu"])
def test_train_options_that_do_not_fit_each_other_are_refused_before_torch_loads(tmp_path,
                                                                                 options, error):
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataroot", ".", *options],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"fastp2p train: error: {error}"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("options, error", [
    (["--model", "cycle_gan", "--epoch_count", "999"], "--model cycle_gan: fastp2p implements "
                                                      "pix2pix only"),
    (["--device", "cpu", "--gpu_ids", "0", "--epoch_count", "999"],
     "--gpu_ids 0 means --device cuda:0, but --device cpu was given: keep one of them"),
    (["--epoch_count", "999"], "no epoch to train: --epoch_count 999"),
], ids=["a model before the option pairs", "the devices before the option pairs",
        "the option pairs before the run's folder"])
def test_train_s_refusals_before_torch_loads_come_in_their_order(tmp_path, options, error):
    """A --model fastp2p cannot honour first, or a --device that --gpu_ids contradicts, then
    options that do not fit each other, then a fresh run into a folder that holds one (each
    exit 2)."""
    (tmp_path / "checkpoints" / "tiny").mkdir(parents=True)
    (tmp_path / "checkpoints" / "tiny" / "latest_net_G.pth").write_bytes(bytes(range(256)))
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataroot", ".",
                             "--checkpoints_dir", "checkpoints", "--name", "tiny", *options],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"fastp2p train: error: {error}"), result.stderr


@pytest.mark.parametrize("saved", ["latest_net_G.pth", "latest_checkpoint.json"])
def test_a_fresh_run_into_a_folder_holding_one_is_refused_before_torch_loads(tmp_path, saved):
    """The refusal a rerun of the same command meets came after torch's import (5-6 s)."""
    run = tmp_path / "checkpoints" / "tiny"
    run.mkdir(parents=True)
    (run / saved).write_bytes(bytes(range(256)))
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataroot", ".",
                             "--checkpoints_dir", "checkpoints", "--name", "tiny"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"fastp2p train: error: checkpoints/tiny already holds a run "
                             f"({saved}): resume it with --continue_train, pick another --name, "
                             "or remove that folder (or pass --overwrite to start again in "
                             "it)\n"), result.stderr


@pytest.mark.parametrize("saved, also, sizes", [
    (None, "", []), ("5_train_state.pth", ", or resume a saved set (--epoch 5)", []),
    (None, "", ["--load_size", "64", "--crop_size", "64"])],
    ids=["no run folder", "another set", "no run folder, a crop unet_256 cannot take"])
def test_continue_train_with_nothing_to_resume_is_refused_before_torch_loads(tmp_path, saved,
                                                                              also, sizes):
    """A mistyped --name or --epoch with --continue_train was said after torch's import; and
    with no train_opt.txt to take options from, the default unet_256 refused --crop_size 64
    first (exit 2), advice that led only to this error."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "0.png").write_bytes(bytes(range(256)))  # listed, not read
    if saved:
        (tmp_path / "checkpoints" / "tiny").mkdir(parents=True)
        (tmp_path / "checkpoints" / "tiny" / saved).write_bytes(bytes(range(256)))
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataroot", "data",
                             "--checkpoints_dir", "checkpoints", "--name", "tiny",
                             "--continue_train", *sizes],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    # (after the line on the options taken from the run's folder, where there is one)
    assert result.stderr.splitlines()[-1] == (
        "fastp2p train: error: no checkpoint checkpoints/tiny/latest_train_state.pth to resume "
        f"from; start without --continue_train{also}"), result.stderr


@pytest.mark.parametrize("options, error", [
    (["--phase", "val"], "data/val: folder not found; expected A|B images side by side"),
    (["--phase", "empty"], "data/empty: no images (.jpg, .jpeg, .png, .ppm, .bmp, .tif, .tiff) "
                           "found; put the A|B images there"),
    (["--dataset_mode", "two_folders"], "data/train/A: folder not found; expected the A images"),
], ids=["missing phase", "no images", "two folders without A"])
def test_a_training_split_missing_or_without_images_is_refused_before_torch_loads(
        tmp_path, options, error):
    """A mistyped --phase or an empty train/ was said after torch's import (5-6 s)."""
    for phase, name in (("train", "0.png"), ("empty", "notes.txt")):
        (tmp_path / "data" / phase).mkdir(parents=True)
        (tmp_path / "data" / phase / name).write_bytes(bytes(range(256)))
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataroot", "data",
                             *options],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    *notes, last = result.stderr.splitlines()
    assert last.startswith(f"fastp2p train: error: {error}"), result.stderr
    # the listing's line on the files it leaves out still comes first
    assert notes == (["fastp2p: ignoring 1 file in data/empty (only "
                      ".jpg/.jpeg/.png/.ppm/.bmp/.tif/.tiff images are read): notes.txt"]
                     if "empty" in options else []), result.stderr
