"""`fastp2p test` prints its thread line ("threads: ...") only once the data has been accepted,
as `fastp2p train` does: a refused --dataroot or --load_size printed the line first, so the
error was not the first thing the user read of a command that did nothing."""
import pytest

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, trained  # noqa: F401 (a fixture)


@pytest.mark.parametrize("extra, code", [(["--dataroot", "{tmp}/nowhere"], 1),
                                         (["--load_size", "7"], 2)],
                         ids=["missing-dataroot", "crop-larger-than-load"])
def test_a_refused_test_prints_no_thread_line(trained, tmp_path, capsys, extra, code):
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results")
    assert main(argv + [word.format(tmp=tmp_path) for word in extra]) == code
    out, err = capsys.readouterr()
    assert "fastp2p test: error: " in err
    assert "threads:" not in out + err


def test_an_accepted_test_prints_its_thread_line(trained, tmp_path, capsys):
    data, checkpoints = trained
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert "threads: " in capsys.readouterr().out
