"""A fresh `fastp2p train` run in a folder that holds a run needs --overwrite (or
--continue_train, or another --name), and --overwrite removes the previous run's checkpoint sets,
loss logs (those set aside as loss_log.N.csv too) and sample images (those kept in web/images.N/
too) only: whole sets, and none of the user's own files. A folder whose run saved no checkpoint
is no run to refuse: its loss log and samples are kept beside the new run's."""
import errno
import json
import os
import re
from pathlib import Path

import pytest

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from fastp2p.train.loss_log import LOG_FIELDS, LossLog
from fastp2p.train.training_page import TrainingPage
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


def test_a_fresh_run_keeps_the_log_of_a_run_that_saved_no_checkpoint(data, tmp_path, capsys):
    """A run stopped before its first save (killed) leaves its loss_log.csv, train_opt.txt and
    web/, no checkpoint: the same command again is a new run there (there is nothing to resume),
    which keeps that log whole as loss_log.1.csv (it started the log anew: the rows were lost)."""
    one_epoch = ["--n_epochs_decay", "0"]
    assert main(train_argv(data, tmp_path, *one_epoch)) == 0
    folder = CheckpointFolder(tmp_path, "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    unsaved_runs_log = (folder.path / "loss_log.csv").read_bytes()
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, *one_epoch)) == 0
    assert (folder.path / "loss_log.1.csv").read_bytes() == unsaved_runs_log
    assert len((folder.path / "loss_log.csv").read_text().splitlines()[1:]) == 4   # its own
    kept = [line for line in capsys.readouterr().err.splitlines() if "loss_log.1.csv" in line]
    assert len(kept) == 1 and "saved no checkpoint" in kept[0], kept


def test_a_fresh_run_keeps_the_samples_of_a_run_that_saved_no_checkpoint(data, tmp_path,
                                                                         capsys):
    """That run's sample images are moved whole into web/images.1/, at once, with one line on
    stderr: the new run's steps count from 0 again, so its samples replaced theirs of the same
    names (another seed draws other images), and its page listed their later ones as its own.
    The user's own files in web/images stay."""
    assert main(train_argv(data, tmp_path)) == 0   # 2 epochs: samples of steps 3, 6 and 8
    folder = CheckpointFolder(tmp_path, "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    images = folder.path / "web" / "images"
    unsaved_runs_samples = {path.name: path.read_bytes() for path in images.iterdir()}
    assert any(name.startswith("epoch002_") for name in unsaved_runs_samples)
    (images / "mine.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--seed", "5")) == 0
    kept = folder.path / "web" / "images.1"
    assert {path.name: path.read_bytes() for path in kept.iterdir()} == unsaved_runs_samples
    samples = {path.name for path in images.iterdir()} - {"mine.png"}
    assert samples and all(name.startswith("epoch001_") for name in samples)
    assert (images / "mine.png").read_bytes() == b"mine"
    assert "epoch002" not in (folder.path / "web" / "index.html").read_text()
    said = [line for line in capsys.readouterr().err.splitlines() if "images.1/" in line]
    assert len(said) == 1 and "saved no checkpoint" in said[0], said


@pytest.mark.parametrize("taken", ["loss_log.1.csv", "web/images.1"])
def test_the_log_and_samples_of_a_run_that_saved_no_checkpoint_share_their_number(
        data, tmp_path, capsys, taken):
    """Kept under the first N that neither name takes, so that a person can pair them. After
    an earlier run's log kept alone (it drew no samples: --no_html) or samples kept alone (its
    log held no row), each took its own first free N: loss_log.2.csv beside images.1/."""
    assert main(train_argv(data, tmp_path)) == 0
    folder = CheckpointFolder(tmp_path, "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    if taken.endswith(".csv"):
        (folder.path / taken).write_text("an earlier run's\n")
    else:
        (folder.path / taken).mkdir()
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--seed", "5")) == 0
    assert (folder.path / "loss_log.2.csv").is_file()
    kept_samples = ["images.1", "images.2"] if taken.startswith("web") else ["images.2"]
    assert sorted(path.name for path in (folder.path / "web").glob("images.*")) == kept_samples
    said = [line for line in capsys.readouterr().err.splitlines() if "saved no checkpoint" in line]
    assert len(said) == 2 and "loss_log.2.csv" in said[1] and "images.2/" in said[0], said


def test_a_log_of_no_row_is_written_anew_not_kept(tmp_path):
    """A run stopped before its first row logged nothing to keep: no loss_log.1.csv."""
    path = tmp_path / "loss_log.csv"
    path.write_text(",".join(LOG_FIELDS) + "\n")
    LossLog(path, say=pytest.fail)
    assert [path.name for path in tmp_path.iterdir()] == ["loss_log.csv"]


def test_overwrite_removes_the_previous_runs_sets_logs_and_samples_only(data, tmp_path, capsys):
    by_iter = ["--save_by_iter", "--save_latest_freq", "2"]
    assert main(train_argv(data, tmp_path, *by_iter)) == 0   # 2 epochs: 2, latest, iter_2..8
    run = tmp_path / "tiny"
    old = {path.name for path in run.iterdir()}
    assert {"2_net_G.pth", "iter_8_checkpoint.json", "latest_train_state.pth"} <= old
    (run / "notes.txt").write_text("mine")
    (run / "loss_log.old.csv").write_text("mine")
    (run / "web" / "images" / "mine.png").write_bytes(b"mine")
    for number in (1, 2):   # the run's logs set aside (a resume without a training state)
        (run / f"loss_log.{number}.csv").write_bytes((run / "loss_log.csv").read_bytes())
        # and the samples of a run that saved no checkpoint, kept
        (run / "web" / f"images.{number}").mkdir()
        (run / "web" / f"images.{number}" / "epoch001_step0000003_real_A.png").write_bytes(b"")
    (run / "web" / "images.1" / "mine.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--overwrite", "--n_epochs_decay", "0")) == 0
    sets = {f"{label}_{suffix}" for label in ("1", "latest")
            for suffix in ("checkpoint.json", "net_G.pth", "net_D.pth", "train_state.pth")}
    assert {path.name for path in run.iterdir()} == sets | {
        "notes.txt", "loss_log.old.csv", "train_opt.txt", "loss_log.csv", "web"}
    assert (run / "notes.txt").read_text() == "mine"
    samples = {path.name for path in (run / "web" / "images").iterdir()} - {"mine.png"}
    assert samples and all(name.startswith("epoch001_") for name in samples)
    assert (run / "web" / "images" / "mine.png").exists()
    assert [path.name for path in (run / "web").glob("images.*/*")] == ["mine.png"]
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


def test_samples_a_fresh_run_could_not_move_aside_are_one_warning_and_moved_at_its_save(
        data, tmp_path, monkeypatch, capsys):
    """A move into web/images.N/ that fails (here: the first file's, once) stopped the run at
    its start (exit code 1). Now it is one warning line and the run goes on: their samples stay
    in images/, unlisted, this run's are staged, and the move is tried again before the save,
    under the loss log's N (the empty images.1/ of the failed move is gone: not images.2/)."""
    assert main(train_argv(data, tmp_path)) == 0
    folder = CheckpointFolder(tmp_path, "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    images = folder.path / "web" / "images"
    unsaved_runs_samples = {path.name: path.read_bytes() for path in images.iterdir()}
    rename, failed = os.rename, []

    def disk_full_once(source, destination, *args, **kwargs):
        if Path(destination).parent.name == "images.1" and not failed:
            failed.append(destination)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source))
        return rename(source, destination, *args, **kwargs)
    monkeypatch.setattr(os, "rename", disk_full_once)
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--seed", "5")) == 0
    assert failed
    kept = folder.path / "web" / "images.1"
    assert {path.name: path.read_bytes() for path in kept.iterdir()} == unsaved_runs_samples
    assert (folder.path / "loss_log.1.csv").is_file()
    assert sorted(path.name for path in (folder.path / "web").glob("images.*")) == ["images.1"]
    samples = {path.name for path in images.iterdir()}
    assert samples and all(name.startswith("epoch001_") for name in samples)
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "were not moved aside" in line]
    assert len(warned) == 1 and "No space left on device" in warned[0], err
    assert "Traceback" not in err and "images.1/ beside it" in err


def _staged_samples(web) -> dict:
    """{name without the staged prefix: bytes} of the staged samples in web/images."""
    return {path.name.removeprefix(TrainingPage.STAGED): path.read_bytes()
            for path in (web / "images").glob(f"{TrainingPage.STAGED}*.png")}


def _never_across(rename):
    """os.rename failing as from a web/images linked to a mount point into each images.N/."""
    def never_across(source, destination, *args, **kwargs):
        if Path(destination).parent.name.startswith("images."):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source))
        return rename(source, destination, *args, **kwargs)
    return never_across


def _run_whose_moves_failed(data, tmp_path, monkeypatch, *extra):
    """A run that saved (2 epochs; ``extra`` options) after one that saved none, whose samples
    it could never move aside: (web/, the unsaved run's sample bytes, {name: bytes} of the
    saved run's)."""
    assert main(train_argv(data, tmp_path)) == 0
    folder = CheckpointFolder(tmp_path, "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    web = folder.path / "web"
    for path in (web / "images").iterdir():   # bytes that tell that run's samples apart
        path.write_bytes(f"the unsaved run's {path.name}".encode())
    unsaved_runs = {path.read_bytes() for path in (web / "images").iterdir()}
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", _never_across(os.rename))
        assert main(train_argv(data, tmp_path, "--seed", "5", *extra)) == 0
    saved_runs = _staged_samples(web)
    assert saved_runs and unsaved_runs == {path.read_bytes() for path in
                                           (web / "images").glob("epoch*.png")}
    return web, unsaved_runs, saved_runs


def _assert_both_runs_samples_kept(web, unsaved_runs, saved_runs) -> None:
    """Each sample of both runs on disk, the saved run's in web/images, and the page listing
    none of the unsaved run's."""
    assert unsaved_runs <= {path.read_bytes() for path in web.glob("images*/*.png")}
    for name, data in saved_runs.items():   # renamed into place, or still staged
        assert data in {path.read_bytes() for path in (web / "images").glob(f"*{name}")}, name
    listed = [web / source for source in
              re.findall(r"<img src='(images/[^']+)'", (web / "index.html").read_text())]
    assert listed and not [path for path in listed if path.read_bytes() in unsaved_runs]


@pytest.mark.parametrize("move_works_again", [False, True])
def test_samples_of_a_run_whose_move_failed_at_each_save_survive_its_resume(
        data, tmp_path, monkeypatch, move_works_again):
    """A move into images.N/ that fails at every save (a web/images linked to a mount point:
    EXDEV) left the run's samples staged beside its checkpoints; the next --continue_train
    deleted them at its start, and after its first save the kept run's past the resumed step,
    listing the kept run's others as its own. The save now records that its run's samples are
    staged: the resume keeps both runs' samples, and moves the kept run's at its first save
    where that works, into the N of their loss log."""
    web, unsaved_runs, saved_runs = _run_whose_moves_failed(data, tmp_path, monkeypatch)
    with monkeypatch.context() as patch:
        if not move_works_again:
            patch.setattr(os, "rename", _never_across(os.rename))
        assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "2")) == 0
    _assert_both_runs_samples_kept(web, unsaved_runs, saved_runs)
    if move_works_again:
        assert {path.read_bytes() for path in web.glob("images.1/*.png")} == unsaved_runs
        assert (web.parent / "loss_log.1.csv").is_file()


def test_a_resume_killed_in_its_first_save_keeps_the_saved_runs_samples_its_own(
        data, tmp_path, monkeypatch):
    """The first save of a resume whose state still owed the move moved the kept run's samples
    into images.1/ and renamed the saved run's staged ones into place, then the checkpoint was
    written: a kill (here: a failed write) in between left them under their own names beside
    the state that still owed the move, and the next resume filed them into images.2/ as the
    kept run's, listing none. They are renamed once the save is on disk."""
    web, unsaved_runs, saved_runs = _run_whose_moves_failed(data, tmp_path, monkeypatch)

    def killed(*args, **kwargs):
        raise CheckpointWriteError("could not write the checkpoint: killed")
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointFolder, "write", killed)
        assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "2")) == 1
    assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "2")) == 0
    assert sorted(path.name for path in web.glob("images.*")) == ["images.1"]
    assert {path.read_bytes() for path in web.glob("images.1/*.png")} == unsaved_runs
    _assert_both_runs_samples_kept(web, unsaved_runs, saved_runs)


def test_a_resume_of_a_set_saved_before_the_move_keeps_the_saved_runs_samples_its_own(
        data, tmp_path, monkeypatch, capsys):
    """The epoch 1 set of a run whose move failed records that the move is owed; a later
    resume did the move and renamed the run's staged samples into place. A resume of that
    epoch 1 set moved the run's own samples into images.2/ at its first save, as "a run that
    saved no checkpoint", and listed none. Its images.1/, whole, says the move is done."""
    web, unsaved_runs, saved_runs = _run_whose_moves_failed(data, tmp_path, monkeypatch,
                                                            "--save_epoch_freq", "1")
    assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "2")) == 0
    assert {path.read_bytes() for path in web.glob("images.1/*.png")} == unsaved_runs
    capsys.readouterr()
    assert main(train_argv(data, tmp_path, "--continue_train", "--epoch", "1")) == 0
    assert "saved no checkpoint" not in capsys.readouterr().err
    assert sorted(path.name for path in web.glob("images.*")) == ["images.1"]
    epoch_1 = {name: data for name, data in saved_runs.items() if name.startswith("epoch001_")}
    assert epoch_1 and all((web / "images" / name).read_bytes() == data
                           for name, data in epoch_1.items())
    listed = re.findall(r"<img src='images/([^']+)'", (web / "index.html").read_text())
    assert set(epoch_1) <= set(listed)


def test_a_resume_without_the_page_carries_the_record_of_the_staged_samples(data, tmp_path,
                                                                            monkeypatch):
    """--no_html leaves web/ as it is, and its saves record the resumed save's staged samples
    again: the next resume with the page keeps them as the first would have."""
    web, unsaved_runs, saved_runs = _run_whose_moves_failed(data, tmp_path, monkeypatch)
    assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "2",
                           "--no_html")) == 0
    options = web.parent / "train_opt.txt"   # the flag has no negative form: its line edited
    options.write_text(re.sub(r"no_html: True", "no_html: False", options.read_text()))
    assert main(train_argv(data, tmp_path, "--continue_train", "--n_epochs", "3")) == 0
    _assert_both_runs_samples_kept(web, unsaved_runs, saved_runs)


def test_a_move_that_fails_at_a_save_says_where_the_samples_are(data, tmp_path, monkeypatch,
                                                                 capsys):
    """It said "a sample image or the training page ... was not written": the earlier run's
    samples stay in web/images and this run's stay staged until a save moves them."""
    web, *_ = _run_whose_moves_failed(data, tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert "was not written" not in err, err
    said = [line for line in err.splitlines() if "kept staged" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {web / 'images'}: the earlier run's "
                                                 "sample images not yet moved aside stay there, "
                                                 "and this run's are kept staged"), err
