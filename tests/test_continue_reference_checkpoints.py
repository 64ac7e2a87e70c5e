"""--continue_train on a folder of the reference implementation's checkpoints (only
latest_net_G.pth and latest_net_D.pth, plain state_dicts): the networks are loaded and training
goes on from --epoch_count with fresh optimizers and schedule, as the reference's own
--continue_train does, with one line saying what is not restored (it used to be refused:
"no checkpoint .../latest_train_state.pth to resume from")."""
import csv
import errno
import os

import pytest
import torch

import fastp2p.train.loss_log as loss_log_module
import fastp2p.train.trainer as trainer_module
from fastp2p.cli import main
from fastp2p.reference import NLayerDiscriminator, UnetGenerator, get_norm_layer
from fastp2p.train.engine import unwrap
from fastp2p.train.loss_log import LOG_FIELDS, LossLog
from helpers.train_helpers import train_argv, write_aligned_dataset


def write_reference_checkpoints(folder, label="latest", seed=11):
    """G and D as the reference's save_networks writes them: torch.save(net.state_dict())."""
    torch.manual_seed(seed)
    norm = get_norm_layer("batch")
    netG = UnetGenerator(3, 3, 5, ngf=4, norm_layer=norm, use_dropout=True)
    netD = NLayerDiscriminator(6, ndf=4, n_layers=3, norm_layer=norm)
    with torch.no_grad():           # not the default init: a random start would not match
        for net in (netG, netD):
            for parameter in net.parameters():
                parameter.uniform_(-0.5, 0.5)
            for name, buffer in net.named_buffers():
                if name.endswith("running_mean") or name.endswith("running_var"):
                    buffer.uniform_(0.1, 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(netG.state_dict(), folder / f"{label}_net_G.pth")
    torch.save(netD.state_dict(), folder / f"{label}_net_D.pth")
    return netG.state_dict(), netD.state_dict()


@pytest.fixture
def started(monkeypatch):
    """What the trainer holds when fit starts: weights, epoch, steps, optimizer state."""
    seen = {}
    fit = trainer_module.Trainer.fit

    def recording_fit(self, loader, progress_bar=None):
        if not seen:
            seen.update(G={k: v.clone() for k, v in unwrap(self.netG).state_dict().items()},
                        D={k: v.clone() for k, v in unwrap(self.netD).state_dict().items()},
                        epoch=self.progress.epoch, steps=self.engine.steps)
        return fit(self, loader, progress_bar)
    monkeypatch.setattr(trainer_module.Trainer, "fit", recording_fit)
    return seen


def test_reference_networks_are_continued_from_epoch_count(tmp_path, started, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    want_G, want_D = write_reference_checkpoints(run)
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch_count", "2", "--no_html")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    notices = [line for line in out.splitlines() if "no training state" in line]
    assert len(notices) == 1 and "--epoch_count 2" in notices[0], out
    assert "Adam's moments" in notices[0] and "RNG" in notices[0]
    assert started["epoch"] == 2 and started["steps"] == 0
    for want, got in ((want_G, started["G"]), (want_D, started["D"])):
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key]), key
    with open(run / "loss_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2                                     # epoch 2 only: 2 pairs, batch 1
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 1e-4])  # linear, epoch 2
    # it saved a fastp2p set over latest_*, which the next --continue_train resumes as usual
    assert (run / "latest_checkpoint.json").is_file() and (run / "latest_train_state.pth").is_file()
    assert main(argv) == 0
    assert "no training state" not in capsys.readouterr().out


def test_another_epoch_of_reference_networks(tmp_path, started, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    want_G, _ = write_reference_checkpoints(tmp_path / "ckpt" / "tiny", label="3")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "3", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch", "3", "--epoch_count", "4", "--no_html")
    assert main(argv) == 0, capsys.readouterr().err
    assert started["epoch"] == 4
    assert all(torch.equal(want_G[key], started["G"][key]) for key in want_G)


def test_reference_networks_with_an_epoch_count_past_the_last_epoch_are_refused(tmp_path,
                                                                                 capsys):
    """They start at --epoch_count, as a fresh run does, so past the last epoch they are
    refused as it is, before anything is written (mutation audit: the run trained nothing yet
    started the run's loss log anew, wrote train_opt.txt and named its checkpoints, exit 0)."""
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    write_reference_checkpoints(run)
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch_count", "3", "--no_html")
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "fastp2p train: error: no epoch to train: --epoch_count 3 is past the last epoch, "
        "--n_epochs 1 + --n_epochs_decay 1 = 2; raise --n_epochs or --n_epochs_decay, or lower "
        "--epoch_count")
    assert sorted(path.name for path in run.iterdir()) == ["latest_net_D.pth",
                                                           "latest_net_G.pth"]


def test_without_the_generator_file_it_is_still_refused(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    (tmp_path / "ckpt" / "tiny").mkdir(parents=True)
    argv = train_argv(data, tmp_path / "ckpt", "--continue_train", "--no_html")
    assert main(argv) == 1
    assert "latest_train_state.pth to resume from" in capsys.readouterr().err


OLD_LOG = ("epoch,step,images,lr,G_GAN,G_L1,D_real,D_fake,images_per_s\n"
           "1,1,1,0.0002,0.66,33.0,0.65,0.79,5.78\n")


def test_a_loss_log_there_is_kept_whole_beside_the_new_one(tmp_path, capsys):
    """Networks without a training state (a fastp2p run's whose state file is gone) start
    their steps again at 0: the folder's loss_log.csv is renamed to the first free
    loss_log.N.csv once the first set is saved, with one line on stderr, and the run logs into
    a new one (it was started anew: the rows it held were lost)."""
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    write_reference_checkpoints(run)
    (run / "loss_log.csv").write_text(OLD_LOG)
    (run / "loss_log.1.csv").write_text("an earlier one's\n")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch_count", "2", "--no_html")
    assert main(argv) == 0, capsys.readouterr().err
    kept = [line for line in capsys.readouterr().err.splitlines() if "kept as" in line]
    assert kept == [f"--continue_train: {run / 'loss_log.csv'} kept as loss_log.2.csv: it "
                    "logs the steps before these networks, resumed without a training state, "
                    "which count again from 0 in a new loss_log.csv"], kept
    assert (run / "loss_log.2.csv").read_text() == OLD_LOG
    assert (run / "loss_log.1.csv").read_text() == "an earlier one's\n"
    with open(run / "loss_log.csv", newline="") as handle:
        assert [(row["epoch"], row["step"]) for row in csv.DictReader(handle)] == [("2", "1"),
                                                                                   ("2", "2")]


def _log_files(folder):
    return {file.name: file.read_text() for file in folder.glob("loss_log*.csv")}


@pytest.mark.parametrize("save_fails", [False, True])
def test_the_loss_log_is_set_aside_before_the_first_save_is_written(tmp_path, monkeypatch,
                                                                     capsys, save_fails):
    """A kill just after the first save left the old run's rows in loss_log.csv beside the new
    training state: the next --continue_train read them as its own and then dropped them. The
    old log is now renamed before the save; a save that fails leaves it renamed, whole."""
    from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError

    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    write_reference_checkpoints(run)
    (run / "loss_log.csv").write_text(OLD_LOG)
    at_the_save = []
    write = CheckpointFolder.write

    def write_then_killed(self, *args, **kwargs):
        if save_fails:
            raise CheckpointWriteError("could not write the checkpoint: No space left")
        write(self, *args, **kwargs)
        at_the_save.append(_log_files(run))   # what a kill here leaves
    monkeypatch.setattr(CheckpointFolder, "write", write_then_killed)
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch_count", "2", "--no_html")
    assert main(argv) == (1 if save_fails else 0), capsys.readouterr().err
    after_the_first_save = at_the_save[0] if at_the_save else _log_files(run)
    assert after_the_first_save["loss_log.1.csv"] == OLD_LOG
    assert OLD_LOG.splitlines()[1] not in after_the_first_save.get("loss_log.csv", "")


def test_the_loss_log_set_aside_stays_in_place_until_the_first_save(tmp_path):
    """A resume that fails before it saves leaves the folder's log as it was, where its
    networks' run left it; the new rows are held for the plot."""
    path = tmp_path / "loss_log.csv"
    path.write_text(OLD_LOG)
    said = []
    loss_log = LossLog(path, say=said.append, set_aside=True)
    loss_log.append(dict.fromkeys(LOG_FIELDS, 1))
    assert path.read_text() == OLD_LOG and len(loss_log.rows) == 1
    assert sorted(tmp_path.iterdir()) == [path] and said == []
    loss_log.discard_held()   # the first save is on disk
    assert (tmp_path / "loss_log.1.csv").read_text() == OLD_LOG and len(said) == 1
    assert path.read_text().splitlines()[1:] == [",".join(["1"] * len(LOG_FIELDS))]


def test_a_set_aside_log_whose_new_file_failed_is_written_at_the_next_save(tmp_path,
                                                                              monkeypatch):
    """The old file renamed aside, the new one not written (a full disk): the next save writes
    it, and sets nothing more aside. The rename was tried again, of a file no longer there, at
    every save: the run's rows were never written."""
    path = tmp_path / "loss_log.csv"
    path.write_text(OLD_LOG)
    loss_log = LossLog(path, say=lambda line: None, set_aside=True)
    loss_log.append(dict.fromkeys(LOG_FIELDS, 1))
    replace_text = loss_log_module.replace_text

    def disk_full_once(*args):
        monkeypatch.setattr(loss_log_module, "replace_text", replace_text)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(loss_log_module, "replace_text", disk_full_once)
    with pytest.raises(OSError):
        loss_log.discard_held()   # the first save (its reports job says the failure)
    loss_log.discard_held()   # the next save
    assert sorted(file.name for file in tmp_path.iterdir()) == ["loss_log.1.csv", "loss_log.csv"]
    assert (tmp_path / "loss_log.1.csv").read_text() == OLD_LOG
    assert path.read_text().splitlines()[1:] == [",".join(["1"] * len(LOG_FIELDS))]


def test_a_name_taken_while_the_log_is_set_aside_is_never_overwritten(tmp_path, monkeypatch):
    """Something else makes loss_log.1.csv after the name was found free and before the rename
    (a process beside the run, which makes it only where nothing is): the rename replaced its
    file."""
    path = tmp_path / "loss_log.csv"
    path.write_text(OLD_LOG)
    made_by_another, rename = [], os.rename

    def taken_meanwhile(source, target):
        try:
            with open(target, "x") as other:
                other.write("another's\n")
            made_by_another.append(os.path.basename(target))
        except FileExistsError:
            pass   # the name is taken: the other process makes another
        rename(source, target)
    monkeypatch.setattr(os, "rename", taken_meanwhile)
    loss_log = LossLog(path, say=lambda line: None, set_aside=True)
    loss_log.set_aside_before_save()
    files = {file.name: file.read_text() for file in tmp_path.iterdir()}
    assert {name: files[name] for name in made_by_another} == dict.fromkeys(made_by_another,
                                                                            "another's\n")
    assert list(files.values()).count(OLD_LOG) == 1


def test_a_failed_set_aside_leaves_no_claimed_name(tmp_path, monkeypatch):
    path = tmp_path / "loss_log.csv"
    path.write_text(OLD_LOG)

    def cannot_rename(source, target):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "rename", cannot_rename)
    loss_log = LossLog(path, say=lambda line: None, set_aside=True)
    with pytest.raises(OSError):
        loss_log.set_aside_before_save()
    assert sorted(tmp_path.iterdir()) == [path] and path.read_text() == OLD_LOG


def _samples(web):
    """{path under web/: bytes} of the sample images in web/images and each web/images.N."""
    return {str(path.relative_to(web)): path.read_bytes()
            for path in sorted(web.glob("images*/epoch*.png"))}


@pytest.mark.parametrize("save_fails", [False, True])
def test_the_samples_there_are_kept_whole_beside_the_new_ones(tmp_path, monkeypatch, capsys,
                                                              save_fails):
    """Those of the steps before these networks (a fastp2p run's whose training state is gone):
    this run's steps count from 0 again, and its samples replaced theirs of the same names, at
    its first sample. They are moved into web/images.1/ just before the first save, as the loss
    log is set aside (under its N), with one line on stderr; until then this run's samples are
    staged: a kill at any point leaves each of theirs whole, under images/ or images.1/."""
    from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
    from fastp2p.train.training_page import TrainingPage

    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    write_reference_checkpoints(run)
    (run / "loss_log.csv").write_text(OLD_LOG)
    (run / "web" / "images").mkdir(parents=True)
    for step in (1, 2):   # the names this run's samples take
        for label in ("real_A", "fake_B", "real_B"):
            name = f"epoch002_step{step:07d}_{label}.png"
            (run / "web" / "images" / name).write_bytes(f"the earlier run's {name}".encode())
    (run / "web" / "images" / "mine.png").write_bytes(b"mine")
    earlier_samples = _samples(run / "web")
    at_each_kill_point = []
    add_sample, write = TrainingPage.add_sample, CheckpointFolder.write

    def add_sample_then_killed(self, *args):
        add_sample(self, *args)
        at_each_kill_point.append(_samples(run / "web"))

    def write_then_killed(self, *args, **kwargs):
        at_each_kill_point.append(_samples(run / "web"))
        if save_fails:
            raise CheckpointWriteError("could not write the checkpoint: No space left")
        write(self, *args, **kwargs)
        at_each_kill_point.append(_samples(run / "web"))
    monkeypatch.setattr(TrainingPage, "add_sample", add_sample_then_killed)
    monkeypatch.setattr(CheckpointFolder, "write", write_then_killed)
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--continue_train", "--epoch_count", "2", "--display_freq", "1")
    assert main(argv) == (1 if save_fails else 0)
    assert len(at_each_kill_point) == (3 if save_fails else 4)
    for samples in at_each_kill_point:   # each earlier file's bytes somewhere
        assert set(earlier_samples.values()) <= set(samples.values()), samples
    kept = {name.removeprefix("images.1/"): data for name, data in _samples(run / "web").items()
            if name.startswith("images.1/")}
    assert kept == {name.removeprefix("images/"): data for name, data in earlier_samples.items()}
    assert (run / "web" / "images" / "mine.png").read_bytes() == b"mine"
    assert (run / "loss_log.1.csv").read_text() == OLD_LOG   # the same N
    said = [line for line in capsys.readouterr().err.splitlines() if "images.1/" in line]
    assert said == [f"--continue_train: the 6 sample image(s) in {run / 'web' / 'images'} kept "
                    "in images.1/ beside it: they show the steps before these networks, resumed "
                    "without a training state, whose samples count again from 0 in images/"]
    if not save_fails:
        this_runs = {path.name for path in (run / "web" / "images").glob("epoch*.png")}
        assert this_runs == {name.removeprefix("images/") for name in earlier_samples}
        assert ".staged-" not in (run / "web" / "index.html").read_text()


def test_samples_whose_set_aside_failed_are_never_deleted_and_are_set_aside_again(tmp_path,
                                                                                  monkeypatch):
    """A set-aside that fails (images.N/ cannot be made) is said, and the save goes on: the
    samples stay in images/, which the discarded samples' deletion after the save must not
    take for a discarded run's; the next save sets them aside, and this run's come out of
    staging."""
    from fastp2p.train.training_page import TrainingPage

    page = TrainingPage(tmp_path / "web", "run", set_aside=True, say=lambda line: None)
    earlier = page.images / "epoch002_step0000001_real_A.png"
    earlier.write_bytes(b"the earlier run's")
    page.add_sample(2, 1, [torch.zeros(1, 3, 4, 4)] * 3)
    make_folder = os.mkdir

    def disk_full(path, *args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "mkdir", disk_full)
    with pytest.raises(OSError):
        page.set_aside_before_save()   # the first save's
    page.delete_discarded_samples()    # after it
    assert earlier.read_bytes() == b"the earlier run's"
    monkeypatch.setattr(os, "mkdir", make_folder)
    page.set_aside_before_save()       # the next save's
    assert (page.images.with_name("images.1") / earlier.name).read_bytes() == b"the earlier run's"
    assert sorted(path.name for path in page.images.iterdir()) == [
        f"epoch002_step0000001_{label}.png" for label in ("fake_B", "real_A", "real_B")]


def test_staged_samples_a_saved_state_records_take_their_names_after_the_next_save(
        tmp_path, monkeypatch):
    """A set-aside that failed at the first save left its state recording this run's samples
    as staged and the move as owed; the next save's set-aside renamed them into place before
    that save was on disk: a kill in between left them under their own names beside the state
    owing the move, and the next --continue_train filed them into images.N/ as the earlier
    run's. They are renamed once the save that records the move is on disk."""
    from fastp2p.train.training_page import TrainingPage

    page = TrainingPage(tmp_path / "web", "run", set_aside=True, say=lambda line: None)
    (page.images / "epoch002_step0000001_real_A.png").write_bytes(b"the earlier run's")
    page.add_sample(2, 1, [torch.zeros(1, 3, 4, 4)] * 3)
    staged = sorted(path.name for path in page.images.iterdir()
                    if path.name.startswith(TrainingPage.STAGED))
    with monkeypatch.context() as patch:
        _failing_at_call(patch, "mkdir", 1)
        with pytest.raises(OSError):
            page.set_aside_before_save()   # the first save's
    assert page.staged_record() == {"set_aside_owed": True, "kept_number": None}
    page.delete_discarded_samples()        # after it
    page.set_aside_before_save()           # the next save's: a kill after it leaves them staged
    assert sorted(path.name for path in page.images.iterdir()) == staged
    assert page.staged_record() == {"set_aside_owed": False, "kept_number": 1}
    page.delete_discarded_samples()        # after it
    assert sorted(path.name for path in page.images.iterdir()) == [
        name.removeprefix(TrainingPage.STAGED) for name in staged]


def _failing_at_call(monkeypatch, name, failing_call):
    """os.``name`` failing (ENOSPC) at its ``failing_call``-th call, once."""
    real, calls = getattr(os, name), []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(os, name, fails_once)


def test_a_set_aside_that_failed_part_way_goes_on_into_the_same_folder(tmp_path, monkeypatch):
    """Its retry took images.2/ (images.1/ was there, holding the first samples moved), split
    the run's samples in two and named only the second part in its line."""
    from fastp2p.train.training_page import TrainingPage

    said = []
    page = TrainingPage(tmp_path / "web", "run", set_aside=True, say=said.append)
    earlier = {page.images / f"epoch002_step000000{step}_real_A.png": f"{step}".encode()
               for step in (1, 2)}
    for path, data in earlier.items():
        path.write_bytes(data)
    with monkeypatch.context() as patch:
        _failing_at_call(patch, "rename", 2)
        with pytest.raises(OSError):
            page.set_aside_before_save()
    page.set_aside_before_save()
    assert sorted(path.name for path in (tmp_path / "web").iterdir()) == ["images", "images.1"]
    assert {path.name: path.read_bytes() for path in (tmp_path / "web/images.1").iterdir()} == {
        path.name: data for path, data in earlier.items()}
    assert len(said) == 1 and "the 2 sample image(s)" in said[0], said


class _Killed(BaseException):
    """A kill: nothing of the process runs after it."""


# the pages whose move a kill may cut: a new run's (at its start), a set-aside's and a resume's
# whose state owes the move (each at its first save)
_MOVING_PAGES = {"new run": {}, "set-aside": {"set_aside": True},
                 "resume owing the move": {"resume_step": 9, "staged": {
                     "set_aside_owed": True, "kept_number": None}}}


def _moved_by_a_page(web, options, say=lambda line: None):
    """A process's page made in ``web`` (``_MOVING_PAGES``' ``options``), which moves the samples
    in web/images into web/images.N/ (a new run's, once the loss log is kept: ``log_kept``)."""
    from fastp2p.train.training_page import TrainingPage

    page = TrainingPage(web, "run", say=say, **options)
    if options:
        page.set_aside_before_save()
    else:
        page.log_kept()


def _killed_after_rename(monkeypatch, count):
    """os.rename killing the process (``_Killed``) once its ``count``-th call is done."""
    real, calls = os.rename, []

    def rename_then_killed(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(args)
        if len(calls) == count:
            raise _Killed
    monkeypatch.setattr(os, "rename", rename_then_killed)


@pytest.mark.parametrize("moved", [1, 2, 3])
@pytest.mark.parametrize("kind", _MOVING_PAGES)
def test_a_move_killed_part_way_goes_on_into_the_same_folder_in_the_next_process(
        tmp_path, monkeypatch, kind, moved):
    """The next process's page took images.2/ for the rest (images.1/ was there, holding those
    moved before the kill): one run's samples split over two numbers."""
    web = tmp_path / "web"
    (web / "images").mkdir(parents=True)
    earlier = {f"epoch002_step000000{step}_real_A.png": f"{step}".encode() for step in (1, 2, 3)}
    for name, data in earlier.items():
        (web / "images" / name).write_bytes(data)
    with monkeypatch.context() as patch:
        _killed_after_rename(patch, moved)
        with pytest.raises(_Killed):
            _moved_by_a_page(web, _MOVING_PAGES[kind])
    said = []
    _moved_by_a_page(web, _MOVING_PAGES[kind], said.append)
    assert sorted(path.name for path in web.iterdir()) == ["images", "images.1"]
    assert {path.name: path.read_bytes() for path in (web / "images.1").iterdir()} == earlier
    assert list((web / "images").iterdir()) == []
    assert [line for line in said if "the 3 sample image(s)" in line and "images.1/" in line]
    _moved_by_a_page(web, _MOVING_PAGES[kind])   # one more: its samples were all moved
    (web / "images" / "epoch001_step0000001_real_A.png").write_bytes(b"another run's")
    _moved_by_a_page(web, _MOVING_PAGES[kind])   # never into a folder whose move is done
    assert sorted(path.name for path in web.iterdir()) == ["images", "images.1", "images.2"]


def test_a_set_aside_log_pairs_with_the_samples_a_killed_move_left(tmp_path, monkeypatch):
    """A new run killed while it moved the earlier run's samples (into images.1/), then a
    --continue_train (no training state: its first save sets the log, then the samples, aside):
    the log took loss_log.2.csv, images.1/ being there, and the samples went on into images.1/,
    so the run's log and samples no longer paired."""
    from fastp2p.train.kept_runs import KeptNumber
    from fastp2p.train.training_page import TrainingPage

    web = tmp_path / "web"
    (web / "images").mkdir(parents=True)
    for step in (1, 2):
        (web / "images" / f"epoch002_step000000{step}_real_A.png").write_bytes(b"earlier")
    (tmp_path / "loss_log.csv").write_text(OLD_LOG)
    with monkeypatch.context() as patch:
        _killed_after_rename(patch, 1)
        with pytest.raises(_Killed):
            _moved_by_a_page(web, {})
    kept_number = KeptNumber(tmp_path)
    page = TrainingPage(web, "run", set_aside=True, say=lambda line: None,
                        kept_number=kept_number)
    log = LossLog(tmp_path / "loss_log.csv", set_aside=True, say=lambda line: None,
                  kept_number=kept_number)
    log.set_aside_before_save()   # the trainer's order: the log's, then the samples'
    page.set_aside_before_save()
    assert sorted(path.name for path in tmp_path.glob("loss_log.*.csv")) == ["loss_log.1.csv"]
    assert sorted(path.name for path in web.iterdir()) == ["images", "images.1"]


def test_a_killed_moves_folder_is_removed_by_overwrite(tmp_path, monkeypatch):
    """--overwrite removes the samples kept in images.N/ and the folder, left empty."""
    from fastp2p.train.report_removal import remove_reports

    web = tmp_path / "web"
    (web / "images").mkdir(parents=True)
    for step in (1, 2):
        (web / "images" / f"epoch002_step000000{step}_real_A.png").write_bytes(b"earlier")
    with monkeypatch.context() as patch:
        _killed_after_rename(patch, 1)
        with pytest.raises(_Killed):
            _moved_by_a_page(web, {})
    remove_reports(tmp_path)
    assert sorted(path.name for path in web.iterdir()) == ["images"]


def test_staged_samples_whose_renames_failed_part_way_are_never_deleted(tmp_path, monkeypatch):
    """The set-aside had moved the earlier run's samples and renamed one of this run's into
    place when the next rename failed: the discarded samples' deletion after the save took the
    renamed one for a discarded run's. Each stays, and the renames go on at the next save."""
    from fastp2p.train.training_page import TrainingPage

    page = TrainingPage(tmp_path / "web", "run", set_aside=True, say=lambda line: None)
    (page.images / "epoch002_step0000001_real_A.png").write_bytes(b"the earlier run's")
    for step in (1, 2):
        page.add_sample(2, step, [torch.full((1, 3, 4, 4), step / 4)] * 3)
    this_runs = {path.name.removeprefix(TrainingPage.STAGED): path.read_bytes()
                 for path in page.images.iterdir() if path.name.startswith(TrainingPage.STAGED)}
    with monkeypatch.context() as patch:
        _failing_at_call(patch, "replace", 2)
        with pytest.raises(OSError):
            page.set_aside_before_save()   # the save's
    page.delete_discarded_samples()        # after it
    assert {path.name.removeprefix(TrainingPage.STAGED): path.read_bytes()
            for path in page.images.iterdir()} == this_runs
    page.set_aside_before_save()           # the next save's
    assert {path.name: path.read_bytes() for path in page.images.iterdir()} == this_runs
