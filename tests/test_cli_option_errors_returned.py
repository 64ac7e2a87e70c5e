"""fastp2p.cli.main(argv) returns 2 for an option error, as for its other refusals: argparse's
errors (an unknown option or command, a bad value) and pack's own usage errors raised
SystemExit(2), which stopped a caller's loop of runs at the first typo (QA notebook 3). The
command line's exit code stays 2; --help still ends in argparse's SystemExit(0)."""
import subprocess
import sys

import pytest

from fastp2p.cli import main


@pytest.mark.parametrize("argv", [
    ["train", "--bogus"], ["train", "--batch_size", "0"], ["bogus"],
    ["pack", "in", "out", "--pairs-per-shard", "0"]],
    ids=["unknown-option", "bad-value", "unknown-command", "pack-usage"])
def test_an_option_error_is_exit_code_2_returned_with_its_two_lines(tmp_path, capsys, argv):
    argv = [str(tmp_path / word) if word in ("in", "out") else word for word in argv]
    assert main(argv) == 2
    usage, error = capsys.readouterr().err.splitlines()
    assert usage.startswith("usage: fastp2p") and ": error: " in error


def test_help_still_exits_and_the_command_line_s_option_error_is_still_2(tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    run = subprocess.run([sys.executable, "-m", "fastp2p", "train", "--bogus"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "unrecognized arguments: --bogus" in run.stderr


@pytest.mark.parametrize("code", ["a hook's own message", 3])
def test_a_sys_exit_in_a_command_s_work_still_reaches_the_caller(monkeypatch, code):
    """Only the parser's option errors are returned: a sys.exit from a command's work (a
    tracker package's, a hook's) was returned too, its text as main's int exit code."""
    import fastp2p.info
    monkeypatch.setattr(fastp2p.info, "run", lambda args: sys.exit(code))
    with pytest.raises(SystemExit) as done:
        main(["info"])
    assert done.value.code == code
