"""Review fixes of the command line (stop 17), each with the defect it fixes:

1. two `fastp2p train` runs of one --name trained into one folder at once (interleaved
   loss_log.csv, latest_* from either): the second is now refused while the first holds the
   folder's lock (two real processes, a torchrun job of two ranks, and a stale lock file);
2. a second `fastp2p bench` of the same day and commit replaced the first one's results;
3. `fastp2p test` died with ZeroDivisionError when a baseline's L1 was 0;
4. --init_gain nan / negative, a --seed past 64 bits, --lambda_L1, --lr or --beta1 nan (or
   --beta1 1) and a --load_size that --preprocess scale_width (or image sizes that
   --preprocess none) hand the U-Net at sizes it cannot take failed late, with tracebacks
   or messages that named no option;
5. index.html's image links broke for file names with #, ? or % in them.
"""
import argparse
import errno
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import fastp2p.train.run_lock as run_lock
from fastp2p.cli import main
from fastp2p.train.evaluation import L1Scores
from fastp2p.train.reports import write_html
from fastp2p.train.run_lock import LOCK_NAME, RunFolderBusy, RunFolderLock
from helpers.torchrun_helpers import as_torchrun_rank, free_port
from helpers.train_helpers import train_argv, write_aligned_dataset

# Processes started here import the fastp2p this test imports (the installed package, or the
# PYTHONPATH the suite runs under); they run in a folder outside the checkout, so `python -m`
# never imports its source folder instead.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HOLD = """
import sys
from fastp2p.train.run_lock import RunFolderLock
lock = RunFolderLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()   # until the test closes stdin
lock.release()
"""


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _files(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _test_argv(data, checkpoints, results, *extra):
    return ["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
            "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
            "--crop_size", "32", "--num_threads", "0", "--results_dir", str(results), *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A checkpoints folder holding one finished 1-epoch run "tiny" (copy it to change it)."""
    checkpoints = tmp_path_factory.mktemp("trained")
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html")) == 0
    return checkpoints


@pytest.fixture
def holder():
    """holder(folder): a separate process holding ``folder``'s run lock until the test ends."""
    started = []

    def hold(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=CHILD_ENV,
                                   cwd=tempfile.gettempdir(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process
    yield hold
    for process in started:
        process.stdin.close()
        process.wait(timeout=60)


# ---- 1. one training run at a time in a run folder ------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--continue_train"], ["--overwrite"]],
                         ids=["fresh", "continue_train", "overwrite"])
def test_a_run_folder_another_process_holds_is_refused(data, trained, tmp_path, capsys, holder,
                                                       extra):
    checkpoints = tmp_path / "ckpt"
    if extra:   # --continue_train and --overwrite need a run in the folder
        shutil.copytree(trained, checkpoints)
    folder = checkpoints / "tiny"
    holder(folder)
    before = _files(folder)
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, *extra)) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(folder) in line and "another `fastp2p train` run holds it" in line, line
    assert re.search(r"process \d+", line) and "--name" in line, line
    assert _files(folder) == before   # nothing written, nothing removed


def _logged_steps(folder) -> int:
    try:
        return len((folder / "loss_log.csv").read_text().splitlines()[1:])
    except FileNotFoundError:
        return 0


def test_a_second_real_train_process_is_refused_while_the_first_trains(data, tmp_path):
    checkpoints = tmp_path / "ckpt"
    folder = checkpoints / "tiny"
    endless = ["--n_epochs", "100000", "--n_epochs_decay", "0", "--no_html", "--log-every", "2",
               "--save_epoch_freq", "100000"]
    command = [sys.executable, "-m", "fastp2p", *train_argv(data, checkpoints, *endless)]
    log = tmp_path / "first.log"   # a file, not a pipe nobody reads until the end
    with open(log, "w") as output:
        first = subprocess.Popen(command, env=CHILD_ENV, cwd=tmp_path, stdout=output,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and _logged_steps(folder) < 1:
            time.sleep(0.2)
        assert first.poll() is None, log.read_text()
        assert _logged_steps(folder) >= 1, "the first run logged no step in 120 s"
        assert (folder / LOCK_NAME).read_text() == f"{first.pid}\n"
        second = subprocess.run(command, env=CHILD_ENV, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert str(folder) in line and f"process {first.pid}" in line, second.stderr
        assert first.poll() is None   # the first run is untouched and still training
    finally:
        first.send_signal(signal.SIGTERM)   # saves latest_* and exits with 128 + 15
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, log.read_text()
    steps = [int(row.split(",")[1]) for row in
             (folder / "loss_log.csv").read_text().splitlines()[1:]]
    assert steps and steps == sorted(set(steps))   # one run's rows only
    assert not (folder / LOCK_NAME).exists()       # gone with the run
    assert (folder / "latest_net_G.pth").is_file()


def _rank(rank, port, argv, out):
    as_torchrun_rank(rank, port)
    Path(out, f"rank{rank}").write_text(str(main(argv)))


def test_every_rank_of_a_torchrun_job_stops_when_the_folder_is_held(data, tmp_path, holder):
    """Rank 0 alone takes the lock; the other ranks get its answer and stop with it, instead
    of training on, then waiting forever at the first collective for the rank that left."""
    folder = tmp_path / "ckpt" / "tiny"
    holder(folder)
    mp.spawn(_rank, args=(free_port(), train_argv(data, tmp_path / "ckpt"), str(tmp_path)),
             nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["1", "1"]
    assert sorted(path.name for path in folder.iterdir()) == [LOCK_NAME]


def test_the_lock_in_one_process_and_its_traces(tmp_path):
    folder = tmp_path / "new" / "ckpt" / "run"
    first, second = RunFolderLock(folder), RunFolderLock(folder)
    first.acquire()
    with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}"):
        second.acquire()
    first.release()
    assert not (tmp_path / "new").exists()   # a run that wrote nothing leaves no folder
    second.acquire()
    (folder / "train_opt.txt").write_text("kept")
    second.release()
    assert sorted(path.name for path in folder.iterdir()) == ["train_opt.txt"]
    # a file a killed run left is no lock: flock goes with the process
    (folder / LOCK_NAME).write_text("12345\n")
    first.acquire()
    first.release()
    assert not (folder / LOCK_NAME).exists()



def test_a_lock_file_another_user_left_still_locks(tmp_path, monkeypatch):
    """A shared run folder: the lock file is made writable for every user the umask allows
    (0o666 & ~umask), and one another user left without write access for us (simulated:
    opening it for writing is refused, as for a non-root user) is opened read-only and
    locked all the same, with the busy message for a second holder."""
    folder = tmp_path / "run"
    lock = RunFolderLock(folder)
    lock.acquire()
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / LOCK_NAME).stat().st_mode & 0o777 == 0o666 & ~umask
    os.close(lock._fd)   # as if the run was killed: its file stays
    lock._fd = None
    real_open = os.open

    def write_refused(path, flags, *mode):
        if flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *mode)
    monkeypatch.setattr(run_lock.os, "open", write_refused)
    first, second = RunFolderLock(folder), RunFolderLock(folder)
    first.acquire()
    with pytest.raises(RunFolderBusy, match="in use"):
        second.acquire()
    first.release()

def test_a_file_system_without_locks_trains_with_a_warning(data, tmp_path, capsys,
                                                           monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--no_html")) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "lock" in line]
    assert len(warnings) == 1 and "does not lock files" in warnings[0], warnings
    assert (tmp_path / "tiny" / "latest_net_G.pth").is_file()
    assert not (tmp_path / "tiny" / LOCK_NAME).exists()


def test_a_lock_file_a_killed_run_left_changes_nothing(data, trained, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    folder = checkpoints / "tiny"
    (folder / LOCK_NAME).write_text("999999\n")
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0")) == 2
    assert "already holds a run" in _one_line(capsys.readouterr().err)
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "1", "--continue_train",
                           "--no_html")) == 0
    assert main(_test_argv(data, checkpoints, tmp_path / "results")) == 0
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--overwrite", "--n_epochs_decay", "0",
                           "--no_html")) == 0
    assert "previous run's 3 checkpoint set(s)" in capsys.readouterr().out
    assert not (folder / LOCK_NAME).exists()


# ---- 2. `fastp2p bench` never replaces another run's results --------------------------------

def _bench_results(run_id, batch_size):
    env = {"device": "cpu", "date": "20261202", "date_utc": "2026-12-02 07:00:00",
           "commit": "unknown", "commit_dirty": None, "torch": "2.13.0", "python": "3.12"}
    row = {"peer": "reference", "batch_size": batch_size, "status": "failed", "error": "x"}
    return {"schema": 1, "run_id": run_id, "mode": "quick", "device_slug": "cpu",
            "environment": env, "training": [row], "inference": [], "micro": [],
            "config": {"network_description": "64x64", "steps": 3, "warmup": 1}}


def test_a_second_bench_run_of_the_day_writes_beside_the_first(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.command as command
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: None)
    args = argparse.Namespace(list_peers=False, plot=None, out=tmp_path)
    written = []
    for run_id, batch_size in (("run-a", 1), ("run-b", 2), ("run-c", 3)):
        def run_suite(settings, on_progress=None, run_id=run_id, batch_size=batch_size):
            for _ in range(2):   # progress writes replace the run's own file
                on_progress({**_bench_results(run_id, batch_size), "complete": False})
            return _bench_results(run_id, batch_size)
        monkeypatch.setattr(suite, "run_suite", run_suite)
        command.run(args)
        out = capsys.readouterr().out
        written.append(Path(re.search(r"wrote json: (\S+)", out).group(1)))
    assert [path.name for path in written] == [
        "cpu-20261202-unknown-quick.json", "cpu-20261202-unknown-quick-2.json",
        "cpu-20261202-unknown-quick-3.json"]
    for path, batch_size in zip(written, (1, 2, 3)):
        assert json.loads(path.read_text())["training"][0]["batch_size"] == batch_size
        assert f"| reference | {batch_size} |" in path.with_suffix(".md").read_text()
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_results_of_an_older_version_or_a_table_alone_are_not_replaced(tmp_path):
    from fastp2p.bench import report

    old = tmp_path / "cpu-20261202-unknown-quick.json"
    old.write_text(json.dumps({k: v for k, v in _bench_results(None, 1).items()
                               if k != "run_id"}))
    (tmp_path / "cpu-20261202-unknown-quick-2.md").write_text("a table kept on its own")
    before = _files(tmp_path)
    path = report.write_json(_bench_results("new", 2), tmp_path)
    assert path.name == "cpu-20261202-unknown-quick-3.json"
    assert all(_files(tmp_path)[name] == data for name, data in before.items())
    assert report.write_json(_bench_results("new", 4), tmp_path) == path   # its own file
    assert json.loads(path.read_text())["training"][0]["batch_size"] == 4


# ---- 3. a baseline with L1 0 ----------------------------------------------------------------

def test_a_baseline_with_l1_zero_shows_no_ratio():
    image = torch.rand(1, 3, 8, 8) * 2 - 1
    scores = L1Scores(True, image[0].clone(), "the mean of 1 train image")
    scores.add(image, image + 0.5, image)   # identity and constant baselines exact
    report = scores.report()
    assert "(model / constant n/a;" in report and "(model / identity n/a;" in report
    assert "model (fake_B)        0.5000" in report


def test_test_command_finishes_when_real_a_is_real_b(data, trained, tmp_path, capsys):
    same = tmp_path / "same" / "test"
    same.mkdir(parents=True)
    half = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half], 1)).save(same / "x.png")
    capsys.readouterr()
    assert main(_test_argv(same.parent, trained, tmp_path / "results")) == 0
    out = capsys.readouterr().out
    assert "identity baseline     0.0000  (model / identity n/a; fake_B = real_A)" in out
    assert "open: " in out


# ---- 4. option values refused up front, naming the option -----------------------------------

SHARED_BAD = [("--init_gain", "nan"), ("--init_gain", "-1"), ("--init_gain", "inf"),
              ("--seed", "99999999999999999999"), ("--seed", str(2 ** 63)), ("--seed", "-1")]
TRAIN_BAD = [("--lambda_L1", "nan"), ("--lambda_L1", "-inf"), ("--lambda_L1", "-3"),
             ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1e-4"),
             ("--beta1", "nan"), ("--beta1", "1"), ("--beta1", "-0.1")]


@pytest.mark.parametrize("command,option,value",
                         [("train", *bad) for bad in SHARED_BAD + TRAIN_BAD]
                         + [("test", *bad) for bad in SHARED_BAD])
def test_bad_gain_seed_and_lambda_exit_2_naming_the_option(data, tmp_path, capsys, command,
                                                           option, value):
    given = f"{option}={value}"   # "-inf" alone would read as an option
    argv = (train_argv(data, tmp_path / "ckpt", "--init_type", "xavier", given)
            if command == "train" else
            _test_argv(data, tmp_path / "ckpt", tmp_path / "res", given))
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}:" in line and value in line, line
    assert not (tmp_path / "ckpt").exists()


def test_what_the_reference_accepts_still_trains(data, tmp_path, capsys):
    """0 for --init_gain, --lambda_L1, --lr and --beta1 (the reference takes any float; Adam
    takes these), the largest seed, and --preprocess scale_width at a --load_size the U-Net
    takes."""
    assert main(train_argv(data, tmp_path / "ckpt", "--init_type", "xavier", "--init_gain", "0",
                           "--lambda_L1", "0", "--lr", "0", "--beta1", "0",
                           "--seed", str(2 ** 63 - 1), "--preprocess",
                           "scale_width", "--n_epochs_decay", "0", "--no_html")) == 0


def _dataset(root, width, height):
    """One train and one test pair whose halves are width x height."""
    for phase in ("train", "test"):
        (root / phase).mkdir(parents=True)
        pixels = np.random.default_rng(1).integers(0, 256, (height, 2 * width, 3), np.uint8)
        Image.fromarray(pixels).save(root / phase / "000.png")
    return root


def test_scale_width_at_a_load_size_the_unet_cannot_take_exits_2(data, tmp_path, capsys):
    argv = train_argv(data, tmp_path / "ckpt", "--preprocess", "scale_width", "--load_size",
                      "40")
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(word in line for word in ("--preprocess scale_width", "--load_size 40",
                                         "--netG unet_32", "multiples of 32")), line
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("command", ["train", "test"])
@pytest.mark.parametrize("preprocess,width,height,load_size", [
    ("scale_width", 32, 40, "32"),   # 32 wide, but 40 tall
    ("none", 40, 40, "40")])         # kept at 40x40
def test_image_sizes_the_unet_cannot_take_name_the_options(tmp_path, trained, capsys, command,
                                                           preprocess, width, height,
                                                           load_size):
    data = _dataset(tmp_path / "data", width, height)
    size = ["--preprocess", preprocess, "--load_size", load_size, "--crop_size", "32"]
    argv = (train_argv(data, tmp_path / "ckpt", *size) if command == "train" else
            _test_argv(data, trained, tmp_path / "res", *size))
    assert main(argv) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"--preprocess {preprocess}" in line and "--netG unet_32" in line, line
    assert f"{width}x{height}" in line and "000.png" in line, line
    if command == "train":
        assert not (tmp_path / "ckpt").exists()


# ---- 5. image links of the HTML pages --------------------------------------------------------

NAMES = ("a#1", "c%20d", "k?", "é ü", "it's")


def _broken_links(page: Path) -> list:
    """Each <img src> resolved as a browser does (URL-unescaped after '#' and '?' end the
    path): those whose file does not exist."""
    broken = []
    for source in re.findall(r"<img src='([^']*)'", page.read_text(encoding="utf-8")):
        url = urljoin(page.resolve().as_uri(), html.unescape(source))
        target = unquote(urlsplit(url).path)
        if not Path(target).is_file():
            broken.append(html.unescape(source))
    return broken


def test_write_html_links_find_files_with_url_characters_in_their_names(tmp_path):
    (tmp_path / "images").mkdir()
    sections = []
    for name in NAMES:
        (tmp_path / "images" / f"{name}.png").write_bytes(b"png")
        sections.append((name, [("real_A", f"images/{name}.png")]))
    (tmp_path / "loss #1.png").write_bytes(b"png")
    write_html(tmp_path / "index.html", "t", sections, loss_plot="loss #1.png")
    page = tmp_path / "index.html"
    assert len(re.findall("<img src=", page.read_text(encoding="utf-8"))) == len(NAMES) + 1
    assert _broken_links(page) == []


def test_test_command_page_links_images_named_with_url_characters(tmp_path, trained, capsys):
    data = tmp_path / "data"
    write_aligned_dataset(data, pairs=len(NAMES), phases=("test",))
    for index, name in enumerate(NAMES):
        (data / "test" / f"{index:03d}.png").rename(data / "test" / f"{name}.png")
    assert main(_test_argv(data, trained, tmp_path / "res")) == 0
    page = tmp_path / "res" / "tiny" / "test_latest" / "index.html"
    assert len(re.findall("<img src=", page.read_text(encoding="utf-8"))) == 3 * len(NAMES)
    assert _broken_links(page) == []
