"""Symbolic links planted in a run folder (or any folder fastp2p writes) never redirect a write.

A run folder may be shared by several users (its .lock is writable by all on purpose), so one of
them may put ``NAME/.lock -> ~victim/file``: the victim's next `fastp2p train` of NAME emptied
that file and wrote its pid into it. Files written in place (the lock, loss_log.csv) are refused
in one line naming them; files replaced by a rename (train_opt.txt, the pages, checkpoints,
results) replace the link itself; a temporary file's name taken by a link is made afresh.
"""
import json
import os

import pytest

from fastp2p.atomic_files import replacing, temporary_sibling
from fastp2p.bench import render
from fastp2p.cli import main
from fastp2p.train.run_lock import RunFolderLock
from helpers.link_helpers import as_another_user
from helpers.train_helpers import one_line, train_argv, write_aligned_dataset

VICTIM_TEXT = "the victim's own file\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def _plant(link, target):
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _train(data, checkpoints, *extra):
    return main(train_argv(data, checkpoints, "--n_epochs_decay", "0", *extra))


def test_a_linked_lock_is_refused_and_its_target_untouched(data, tmp_path, victim, capsys):
    lock = _plant(tmp_path / "ck" / "tiny" / ".lock", victim)
    assert _train(data, tmp_path / "ck") == 1
    line = one_line(capsys.readouterr().err)
    assert str(lock) in line and "symbolic link" in line and "remove it" in line
    assert victim.read_text() == VICTIM_TEXT
    assert lock.is_symlink()   # left for its owner to see


def test_a_linked_lock_is_refused_by_the_lock_itself(tmp_path, victim):
    from fastp2p.atomic_files import NotAPlainFile
    _plant(tmp_path / "run" / ".lock", victim)
    lock = RunFolderLock(tmp_path / "run")
    with pytest.raises(NotAPlainFile, match=r"\.lock is a symbolic link"):
        lock.acquire()
    lock.release()
    assert victim.read_text() == VICTIM_TEXT


def test_a_fifo_at_the_lock_is_refused_without_blocking(tmp_path):
    from fastp2p.atomic_files import NotAPlainFile
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / ".lock")
    with pytest.raises(NotAPlainFile, match="a special file"):
        RunFolderLock(tmp_path / "run").acquire()


def test_a_linked_loss_log_is_refused_and_its_target_untouched(data, tmp_path, victim, capsys):
    log = _plant(tmp_path / "ck" / "tiny" / "loss_log.csv", victim)
    assert _train(data, tmp_path / "ck") == 1
    line = one_line(capsys.readouterr().err)
    assert str(log) in line and "symbolic link" in line
    assert victim.read_text() == VICTIM_TEXT


def test_a_linked_options_file_is_replaced_not_written_through(data, tmp_path, victim, capsys):
    options = _plant(tmp_path / "ck" / "tiny" / "train_opt.txt", victim)
    assert _train(data, tmp_path / "ck", "--no_html") == 0, capsys.readouterr().err
    assert victim.read_text() == VICTIM_TEXT
    assert not options.is_symlink() and "name: tiny" in options.read_text()


def test_links_at_temporary_names_are_not_written_through(tmp_path, victim):
    target = tmp_path / "page.html"
    _plant(temporary_sibling(target), victim)
    with replacing(target) as file:
        file.write(b"new page")
    assert target.read_text() == "new page" and not target.is_symlink()
    assert victim.read_text() == VICTIM_TEXT
    assert not temporary_sibling(target).exists()


def test_checkpoint_temporaries_taken_by_links_are_not_written_through(data, tmp_path, victim,
                                                                      capsys):
    folder = tmp_path / "ck" / "tiny"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "latest_train_state.pth"):
        _plant(temporary_sibling(folder / name), victim)
    assert _train(data, tmp_path / "ck", "--no_html") == 0, capsys.readouterr().err
    assert victim.read_text() == VICTIM_TEXT
    assert (folder / "latest_net_G.pth").is_file()


def test_open_plain_file_opens_only_a_plain_file(tmp_path, victim):
    from fastp2p.atomic_files import NotAPlainFile, open_plain_file
    link = _plant(tmp_path / "log.csv", victim)
    for mode in ("w", "a"):
        with pytest.raises(NotAPlainFile, match="log.csv is a symbolic link"):
            open(link, mode, opener=open_plain_file)
    with pytest.raises(NotAPlainFile, match="is a folder"):
        open_plain_file(tmp_path, os.O_RDONLY)
    assert victim.read_text() == VICTIM_TEXT
    plain = tmp_path / "plain.csv"
    plain.write_text("old text")
    with open(plain, "w", opener=open_plain_file) as handle:
        handle.write("new")
    with open(plain, "a", opener=open_plain_file) as handle:
        handle.write("+more")
    assert plain.read_text() == "new+more"


def test_bench_pages_replace_planted_links(tmp_path, victim):
    results = {"mode": "quick", "training": [], "environment": {
        "device": "cpu", "date_utc": "2026-12-02 10:00", "date": "20261202", "commit": "abc",
        "python": "3.11"}, "config": {"network_description": "tiny", "steps": 2, "warmup": 1}}
    json_path = tmp_path / "results.json"
    json_path.write_text(json.dumps(results))
    for suffix in (".md", ".png"):
        _plant(json_path.with_suffix(suffix), victim)
    files = render.render_files(json_path)
    assert victim.read_text() == VICTIM_TEXT
    assert not files["markdown"].is_symlink() and "# fastp2p benchmark" in (
        files["markdown"].read_text())
    if files["chart"] is not None:
        assert not files["chart"].is_symlink()


@pytest.mark.parametrize("linked", ["web", "web/images"])
def test_a_linked_web_folder_is_refused_and_overwrite_leaves_its_files(data, tmp_path, capsys,
                                                                       monkeypatch, linked):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = {name: f"their {name}" for name in ("index.html", "loss.png",
                                                 "epoch001_step0000001_real_A.png")}
    for name, text in theirs.items():
        (elsewhere / name).write_text(text)
    run = tmp_path / "ck" / "tiny"
    if linked == "web/images":
        (run / "web").mkdir(parents=True)
    link = _plant(run / linked, elsewhere)
    as_another_user(monkeypatch, link)
    for extra in ((), ("--overwrite",)):
        assert _train(data, tmp_path / "ck", *extra) == 1
        line = one_line(capsys.readouterr().err)
        assert str(link) in line and "symbolic link" in line and "not a folder" in line
        assert {path.name: path.read_text() for path in elsewhere.iterdir()} == theirs


@pytest.mark.parametrize("extra", [("--overwrite",), ("--continue_train", "--n_epochs", "2")],
                         ids=["overwrite", "continue"])
@pytest.mark.parametrize("planted", ["web", "loss_log.csv"])
def test_a_refused_run_leaves_the_previous_runs_files_as_they_were(data, tmp_path, capsys,
                                                                   monkeypatch, extra, planted):
    """The link checks come before anything of the run folder changes: --overwrite used to
    remove the loss log, and both modes to rewrite train_opt.txt, before the refusal."""
    checkpoints = tmp_path / "ck"
    assert _train(data, checkpoints) == 0
    run = checkpoints / "tiny"
    elsewhere = tmp_path / "elsewhere"
    (run / planted).rename(elsewhere)
    if planted == "web":   # a folder link of one's own is followed; another user's is not
        as_another_user(monkeypatch, _plant(run / planted, elsewhere))
    else:                  # a loss log written in place: any link is refused
        _plant(run / planted, elsewhere)
    kept = {name: (run / name).read_bytes() for name in ("loss_log.csv", "train_opt.txt")
            if not (run / name).is_symlink()}
    theirs = elsewhere.read_bytes() if elsewhere.is_file() else None
    capsys.readouterr()
    if planted == "loss_log.csv" and "--overwrite" in extra:
        # --overwrite removes the previous loss log: a link there is unlinked, its target kept
        assert _train(data, checkpoints, *extra) == 0
        assert not (run / planted).is_symlink() and elsewhere.read_bytes() == theirs
        return
    assert _train(data, checkpoints, *extra) == 1
    assert f"{run / planted} is a symbolic link" in one_line(capsys.readouterr().err)
    assert {name: (run / name).read_bytes() for name in kept} == kept
    assert (run / planted).is_symlink()


def test_a_folder_at_the_loss_log_is_refused_by_overwrite_before_anything_changes(
        data, tmp_path, capsys):
    """--overwrite removes a previous loss log that is a file or a link; a folder there it
    cannot remove, so it is refused before the web page, samples and options are touched."""
    checkpoints = tmp_path / "ck"
    assert _train(data, checkpoints) == 0
    run = checkpoints / "tiny"
    (run / "loss_log.csv").unlink()
    (run / "loss_log.csv").mkdir()
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert _train(data, checkpoints, "--overwrite") == 1
    assert "loss_log.csv is a folder" in one_line(capsys.readouterr().err)
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_run_without_its_page_removes_nothing_through_another_user_s_web_link(
        data, tmp_path, monkeypatch):
    """With --no_html the web/ link is not refused (nothing is written there), but the start of
    the run removed the temporary files of dead processes through it: files in another user's
    folder, named like fastp2p's leftovers."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = {name: name for name in (".report.tmp-999999", ".data.tmp-999998.csv")}
    for name in theirs:
        (elsewhere / name).write_text(name)
    link = _plant(tmp_path / "ck" / "tiny" / "web", elsewhere)
    as_another_user(monkeypatch, link)
    assert _train(data, tmp_path / "ck", "--no_html") == 0
    assert {path.name: path.read_text() for path in elsewhere.iterdir()} == theirs
