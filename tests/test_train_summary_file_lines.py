"""The end summary of ``fastp2p train`` names where the run's files are, unless the caller asks
it not to (``train_command.run``'s ``name_files``): the benchmark's end-to-end job trains in a
temporary folder removed with the job, and those lines pointed into it (QA r39 finding 7; the
bench first hid them by filtering the printed text, ba979f6)."""
import argparse

import pytest

from fastp2p.train import train_command
from helpers.train_helpers import train_argv, write_aligned_dataset

FILE_LINES = ("checkpoints: ", "samples:     ", "loss plot:   ", "loss log:    ", "open:        ")


def _train_args(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    parser = argparse.ArgumentParser(prog="fastp2p")
    train_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0"))


@pytest.mark.parametrize("name_files", [True, False])
def test_the_summary_names_the_files_unless_asked_not_to(tmp_path, capsys, name_files):
    asked = {} if name_files else {"name_files": False}  # a normal run passes nothing
    assert train_command.run(_train_args(tmp_path), **asked) == 0
    out = capsys.readouterr().out
    run = tmp_path / "ckpt" / "tiny"
    named = [line for line in out.splitlines() if line.startswith(FILE_LINES)]
    if name_files:  # a normal run: each of the five
        assert [line[:13] for line in named] == list(FILE_LINES), out
        assert f"checkpoints: {run}/latest_net_G.pth (and latest_net_D.pth)" in named
    else:
        assert named == [] and str(run) not in out, out
    assert "images/s over " in out  # the rest of the summary is printed either way
    assert (run / "latest_net_G.pth").is_file()
