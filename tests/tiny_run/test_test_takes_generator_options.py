"""`fastp2p test` takes the generator's options its command line leaves out from the run's
train_opt.txt (QA: a unet_32 / ngf 4 run was tested only with --netG unet_32 --ngf 4 given again;
without them the load refused the file)."""
import shutil

from fastp2p.cli import main


def _test_argv(dataroot, checkpoints, results, *extra):
    """A test of the run "tiny" that names none of its model options."""
    return ["test", "--dataroot", str(dataroot), "--checkpoints_dir", str(checkpoints), "--name",
            "tiny", "--load_size", "32", "--crop_size", "32", "--num_threads", "0",
            "--results_dir", str(results), *extra]


def test_the_generator_options_left_out_are_the_runs(data, trained, tmp_path, capsys):
    assert main(_test_argv(data, trained, tmp_path / "results")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("generator options:")]
    assert len(lines) == 1, out
    assert f"took 6 option(s) the command line leaves out from {trained / 'tiny'}" in lines[0]
    assert "--netG unet_32 --ngf 4" in lines[0], lines[0]


def test_given_options_win(data, trained, tmp_path, capsys):
    """An --ngf given is this command line's: the file saved with 4 is refused, naming it."""
    assert main(_test_argv(data, trained, tmp_path / "results", "--ngf", "8")) == 1
    captured = capsys.readouterr()
    assert "--ngf" not in next(line for line in captured.out.splitlines()
                               if line.startswith("generator options:"))
    first_error = captured.err.splitlines()[0]
    assert "saved by other model options: pass --netG unet_32 --ngf 4" in first_error


def test_without_an_options_file_the_defaults_apply(data, trained, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    (checkpoints / "tiny" / "train_opt.txt").unlink()
    assert main(_test_argv(data, checkpoints, tmp_path / "results")) == 1
    captured = capsys.readouterr()
    assert "generator options:" not in captured.out
    assert "saved by other model options" in captured.err.splitlines()[0], captured.err


def test_a_value_the_options_file_lost_is_a_warning_on_stderr_naming_the_default_used(
        data, trained, tmp_path, capsys):
    """It went to stdout and read "not read, so left at the command line's: --ngf 'abc'", as if
    ngf were 'abc': the default 64 was used, and the command line gave no --ngf."""
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    options = checkpoints / "tiny" / "train_opt.txt"
    options.write_text(options.read_text().replace("ngf: 4\n", "ngf: abc\n"))
    assert main(_test_argv(data, checkpoints, tmp_path / "results")) == 1
    captured = capsys.readouterr()
    assert "warning" not in captured.out and "'abc'" not in captured.out, captured.out
    warning = captured.err.splitlines()[0]
    assert warning.startswith(f"generator options: warning: {options} holds values"), warning
    assert "the defaults are used in their place: --ngf 'abc' (the default 64 used)" in warning
    assert "saved by other model options" in captured.err.splitlines()[1], captured.err


def test_an_options_file_with_windows_line_ends_gives_the_runs_options(data, trained, tmp_path,
                                                                         capsys):
    """Mutation audit: no test read a train_opt.txt whose line ends a copy through Windows
    changed (its reading is pinned in test_resume_takes_saved_options.py)."""
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    options = checkpoints / "tiny" / "train_opt.txt"
    options.write_bytes(options.read_bytes().replace(b"\n", b"\r\n"))
    assert main(_test_argv(data, checkpoints, tmp_path / "results")) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err
    line = next(line for line in captured.out.splitlines()
                if line.startswith("generator options:"))
    assert line.endswith("not the defaults: --netG unet_32 --ngf 4"), line
