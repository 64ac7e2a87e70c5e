"""What a requeued job script needs to tell outcomes apart: --resume_or_start resumes a run
folder that holds a checkpoint and starts a new run otherwise, and a NAME another run holds
exits with 75 (EX_TEMPFAIL: try again later), not the 1 of a failure (the lock's own tests, in
test_run_lock.py, check 75 for each way of starting)."""
import shutil

from fastp2p.cli import main
from helpers.train_helpers import logged_steps, one_line, train_argv

JOB = ("--n_epochs_decay", "0", "--no_html", "--resume_or_start")


def test_an_empty_folder_starts_a_new_run(data, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, *JOB)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"--resume_or_start: no checkpoint latest in {checkpoints / 'tiny'}: a new run" in out
    assert logged_steps(checkpoints / "tiny") == [1, 2, 3, 4]


def test_a_folder_with_a_checkpoint_is_resumed(data, trained, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    argv = train_argv(data, checkpoints, *JOB, "--n_epochs", "2")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{checkpoints / 'tiny'} holds checkpoint latest: resuming it" in out, out
    assert "resumed" in out and logged_steps(checkpoints / "tiny") == list(range(1, 9))


def test_with_overwrite_it_is_refused(data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "ckpt", *JOB, "--overwrite")) == 2
    assert "keep one of them" in one_line(capsys.readouterr().err)


def test_the_exit_codes_are_in_the_help(capsys):
    try:
        main(["train", "--help"])
    except SystemExit:
        pass
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("exit codes: 0 trained (or nothing left to train), 1 failed (a message says why), "
            "2 options refused, 75 NAME in use by another fastp2p train run") in help_text


def test_a_suffixed_run_is_found_and_its_options_taken(data, tmp_path, capsys):
    """--suffix names the folder NAME_SUFFIX: the folder was looked for without it, so a
    requeued job said "no checkpoint ... a new run", then was refused (the folder holds a
    run), and --continue_train took no options."""
    checkpoints = tmp_path / "ckpt"
    suffixed = (*JOB, "--suffix", "x")
    assert main(train_argv(data, checkpoints, *suffixed)) == 0, capsys.readouterr().err
    capsys.readouterr()
    resume = ["train", "--checkpoints_dir", str(checkpoints), "--name", "tiny", "--num_threads",
              "0", "--n_epochs", "2", *suffixed]
    assert main(resume) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{checkpoints / 'tiny_x'} holds checkpoint latest: resuming it" in out, out
    assert "--continue_train: took " in out and "resumed" in out, out


def test_load_iter_names_the_set_looked_for(data, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    argv = train_argv(data, checkpoints, *JOB, "--load_iter", "400")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"--resume_or_start: no checkpoint iter_400 in {checkpoints / 'tiny'}" in out, out
