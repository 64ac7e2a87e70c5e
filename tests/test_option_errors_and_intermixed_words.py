"""Option errors are two lines, a one-line usage and the error (argparse printed the command's
whole usage first: 35 lines for `fastp2p train`, the error line at the bottom); an option
between a command's two positional arguments is read as a user means it (QA r54)."""
import pytest

from fastp2p.bench.command import main as benchmarks_main
from fastp2p.cli import main
from fastp2p.data.packed_index import is_packed
from helpers.train_helpers import write_aligned_dataset


def _error_lines(capsys, run, argv):
    assert run(argv) == 2   # returned, as any refusal's exit code: a caller's loop goes on
    return capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("run, argv, usage, error", [
    (main, ["train", "--batch_size", "0"], "usage: fastp2p train [options] (",
     "fastp2p train: error: argument --batch_size: must be >= 1, got 0"),
    (main, ["test", "--norm", "batchnorm"], "usage: fastp2p test [options] (",
     "fastp2p test: error: argument --norm: invalid choice: 'batchnorm'"),
    (main, ["pack"], "usage: fastp2p pack [options] [DATAROOT] [OUT] (",
     "fastp2p pack: error: pass DATAROOT and OUT"),
    (main, ["nosuch"], "usage: fastp2p [options] COMMAND ... (",
     "fastp2p: error: argument COMMAND: invalid choice: 'nosuch'"),
    (main, ["info", "--nope"], "usage: fastp2p info [options] (",
     "fastp2p info: error: unrecognized arguments: --nope"),
    (benchmarks_main, ["--nope"], "usage: python -m benchmarks [options] (",
     "python -m benchmarks: error: unrecognized arguments: --nope"),
    (benchmarks_main, ["--steps", "0"], "usage: python -m benchmarks [options] (",
     "python -m benchmarks: error: argument --steps: must be >= 1, got 0")])
def test_an_option_error_is_a_usage_line_and_the_error(capsys, run, argv, usage, error):
    lines = _error_lines(capsys, run, argv)
    assert len(lines) == 2, lines
    assert lines[0].startswith(usage) and "--help` lists every option)" in lines[0], lines
    assert lines[1].startswith(error), lines


def test_an_option_between_dataroot_and_out_packs(tmp_path):
    data = write_aligned_dataset(tmp_path / "data")
    out = tmp_path / "packed"
    assert main(["pack", str(data), "--load_size", "32", str(out), "--no-progress"]) == 0
    assert is_packed(out / "train") and is_packed(out / "test")


def test_an_unknown_option_between_positionals_is_still_refused(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    lines = _error_lines(capsys, main, ["pack", str(data), "--bogus", str(tmp_path / "out")])
    assert lines[-1].startswith("fastp2p pack: error: unrecognized arguments: --bogus"), lines
    assert not (tmp_path / "out").exists()


def test_a_folder_after_phase_says_where_folders_go(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    lines = _error_lines(capsys, main, ["pack", "--phase", "train", str(data),
                                         str(tmp_path / "out")])
    assert "put DATAROOT and OUT before it, e.g. fastp2p pack DATAROOT OUT --phase" \
        in lines[-1], lines
