"""--continue_train of a run whose train_opt.txt does not record the folder the run was started
in (an older fastp2p's, or the reference's: no working_dir line), with a relative --dataroot
(QA: from another folder it trained on that folder's dataset of the same name without a word,
and recorded that folder as the run's, so every later resume used it too)."""
import pytest

from fastp2p.cli import main
from fastp2p.train.saved_options import END_LINE, WORKING_DIR, read_options
from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.fixture
def older_run(data, tmp_path, monkeypatch, capsys):
    """A 1-epoch run "tiny" started in A with --dataroot data, its train_opt.txt without
    the working_dir line, as an older fastp2p wrote it; the current folder B."""
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "data").symlink_to(data)
    checkpoints = tmp_path / "ckpt"
    monkeypatch.chdir(tmp_path / "A")
    assert main(train_argv("data", checkpoints, "--n_epochs_decay", "0", "--no_html")) == 0
    options = checkpoints / "tiny" / "train_opt.txt"
    options.write_text("".join(line for line in options.read_text().splitlines(keepends=True)
                               if not line.startswith(f"{WORKING_DIR}: ")))
    (tmp_path / "B").mkdir()
    monkeypatch.chdir(tmp_path / "B")
    capsys.readouterr()
    return checkpoints


def _resume(checkpoints, *extra):
    """A --continue_train to epoch 2 that names nothing of the run but its folder."""
    return main(["train", "--checkpoints_dir", str(checkpoints), "--name", "tiny",
                 "--continue_train", "--num_threads", "0", "--n_epochs", "2", *extra])


def test_another_dataset_of_that_name_is_refused_where_the_state_counts_pairs(older_run,
                                                                            tmp_path, capsys):
    """The training state records 4 pairs; B/data holds 2: refused, nothing trained."""
    write_aligned_dataset(tmp_path / "B" / "data", pairs=2, phases=("train",), seed=5)
    before = (older_run / "tiny" / "train_opt.txt").read_text()
    assert _resume(older_run) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("fastp2p train: error:"), err
    for words in ("holds 2 pairs", "trained on 4", str(tmp_path / "B"), "give --dataroot"):
        assert words in err[-1], err
    assert (older_run / "tiny" / "train_opt.txt").read_text() == before


def test_the_refusal_of_a_file_cut_short_says_it_is_cut_short(older_run, tmp_path, capsys):
    """A file cut short in or before its working_dir line lacks that line too: the refusal
    gives the reason the warning before it gives (it said "(an older fastp2p's)")."""
    options = older_run / "tiny" / "train_opt.txt"
    options.write_text(options.read_text().split(END_LINE)[0])
    write_aligned_dataset(tmp_path / "B" / "data", pairs=2, phases=("train",), seed=5)
    assert _resume(older_run) == 2
    err = capsys.readouterr().err.splitlines()
    assert "holds 2 pairs" in err[-1], err
    assert ("does not record the folder the run was started in (it ends before its last line: "
            "cut short") in err[-1], err[-1]


def test_the_current_folder_is_said_and_not_recorded_as_the_runs(older_run, data, tmp_path,
                                                                 capsys):
    (tmp_path / "B" / "data").symlink_to(data)
    assert _resume(older_run) == 0, capsys.readouterr().err
    warned = [line for line in capsys.readouterr().err.splitlines()   # a warning: on stderr
              if line.startswith("--continue_train: warning:")]
    assert len(warned) == 1, warned
    assert (f"its --dataroot data is read from the current folder, as {tmp_path / 'B' / 'data'}"
            in warned[0]), warned[0]
    saved = read_options(older_run / "tiny" / "train_opt.txt")
    assert saved["dataroot"] == "data" and WORKING_DIR not in saved, saved
    assert saved["n_epochs"] == "2"   # trained on: the file was written


def test_a_dataroot_given_is_recorded_with_the_folder(older_run, data, capsys):
    assert _resume(older_run, "--dataroot", str(data)) == 0, capsys.readouterr().err
    assert "read from the current folder" not in capsys.readouterr().err
    assert WORKING_DIR in read_options(older_run / "tiny" / "train_opt.txt")
