"""A fresh `fastp2p train` run in a folder that holds a run needs --overwrite (or
--continue_train, or another --name), and --overwrite removes the previous run's checkpoint sets,
loss log and sample images only: whole sets, and none of the user's own files."""
import json

import pytest

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import one_line, tiny_networks, train_argv, write_aligned_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


def test_a_fresh_run_in_a_run_folder_needs_overwrite(data, tmp_path, capsys):
    one_epoch = ["--n_epochs_decay", "0"]
    assert main(train_argv(data, tmp_path, *one_epoch)) == 0
    run = tmp_path / "tiny"
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, *one_epoch)) == 2
    line = one_line(capsys.readouterr().err)
    assert all(hint in line for hint in ("--continue_train", "--name", "--overwrite", str(run)))
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before
    # a finished run resumed trains nothing and says where its files are (documented)
    assert main(train_argv(data, tmp_path, *one_epoch, "--continue_train")) == 0
    assert main(train_argv(data, tmp_path, *one_epoch, "--overwrite", "--seed", "5")) == 0
    assert (run / "latest_net_G.pth").read_bytes() != before["latest_net_G.pth"]
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--continue_train", "--overwrite")) == 2
    assert "keep one of them" in one_line(capsys.readouterr().err)


def test_overwrite_removes_the_previous_runs_sets_logs_and_samples_only(data, tmp_path, capsys):
    by_iter = ["--save_by_iter", "--save_latest_freq", "2"]
    assert main(train_argv(data, tmp_path, *by_iter)) == 0   # 2 epochs: 2, latest, iter_2..8
    run = tmp_path / "tiny"
    old = {path.name for path in run.iterdir()}
    assert {"2_net_G.pth", "iter_8_checkpoint.json", "latest_train_state.pth"} <= old
    (run / "notes.txt").write_text("mine")
    (run / "web" / "images" / "mine.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--overwrite", "--n_epochs_decay", "0")) == 0
    sets = {f"{label}_{suffix}" for label in ("1", "latest")
            for suffix in ("checkpoint.json", "net_G.pth", "net_D.pth", "train_state.pth")}
    assert {path.name for path in run.iterdir()} == sets | {
        "notes.txt", "train_opt.txt", "loss_log.csv", "web"}
    assert (run / "notes.txt").read_text() == "mine"
    samples = {path.name for path in (run / "web" / "images").iterdir()} - {"mine.png"}
    assert samples and all(name.startswith("epoch001_") for name in samples)
    assert (run / "web" / "images" / "mine.png").exists()
    steps = (run / "loss_log.csv").read_text().splitlines()[1:]
    assert len(steps) == 4   # the new run's 4 steps, none of the previous run's 8
    line = [line for line in capsys.readouterr().out.splitlines() if "--overwrite" in line]
    assert len(line) == 1   # 2, iter_2, iter_4, iter_6, iter_8, latest
    assert "previous run's 6 checkpoint set(s)" in line[0] and str(run) in line[0]
    # the labels quoted: "2 removed" read as a count
    assert line[0].endswith("are gone: '2', 'iter_2', 'iter_4', 'iter_6', 'iter_8' removed; "
                            "'latest' replaced by this run's first save"), line[0]


def test_the_sets_overwrite_removes_are_whole_sets_and_nothing_else(tmp_path):
    folder = CheckpointFolder(tmp_path, "run")
    netG, netD = tiny_networks()
    folder.save(["latest", "3"], netG, netD, {"progress": {}})
    (folder.path / "5_net_G.pth").write_bytes(b"the reference's, no manifest")
    (folder.path / "iter_40_checkpoint.json").write_text("{damaged")
    (folder.path / "iter_40_net_D.pth").write_bytes(b"d")
    staged = json.loads((folder.path / "3_checkpoint.json").read_text())["files"]["3_net_G.pth"]
    (folder.path / staged["staged"]).write_bytes(b"a committed save's unrenamed file")
    mine = ["notes.txt", "latest_notes.txt", "best_net_G.pth", "3_net_G.pth.bak", "x_3_net_G.pth"]
    for name in mine:
        (folder.path / name).write_text("mine")
    sets = folder.saved_sets()
    assert sorted(sets) == ["3", "5", "iter_40", "latest"]
    assert sets["3"][0].name == "3_checkpoint.json"   # the manifest goes first
    assert staged["staged"] in {path.name for path in sets["3"]}
    folder.remove_sets(sets)
    assert sorted(path.name for path in folder.path.iterdir()) == sorted(mine)
