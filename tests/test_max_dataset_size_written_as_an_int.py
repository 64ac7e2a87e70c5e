"""train_opt.txt recorded `--max_dataset_size 64` as "max_dataset_size: 64.0" (the option
parsed every count as a float); the reference writes "64" (type=int), and "inf" for its
default, as fastp2p still does. A run resumed from a file written the old way is not told the
option changed."""
import argparse

import pytest

from fastp2p.data.options import add_data_arguments
from fastp2p.train.saved_options import changed_options, write_options


def _args(*argv):
    return add_data_arguments(argparse.ArgumentParser()).parse_args(["--dataroot", "x", *argv])


@pytest.mark.parametrize("argv, line", [(("--max_dataset_size", "64"), "max_dataset_size: 64"),
                                        ((), "max_dataset_size: inf")], ids=["64", "default"])
def test_the_options_file_records_a_count_as_an_integer(tmp_path, argv, line):
    write_options(_args(*argv), tmp_path / "train_opt.txt")
    assert line in (tmp_path / "train_opt.txt").read_text().splitlines()


@pytest.mark.parametrize("saved", ["64.0", "64"])
def test_a_resume_from_a_file_that_wrote_64_0_sees_no_change(tmp_path, saved):
    (tmp_path / "train_opt.txt").write_text(f"max_dataset_size: {saved}\n")
    args = _args("--max_dataset_size", "64")
    assert changed_options(args, tmp_path / "train_opt.txt", ("max_dataset_size",)) == ""
    assert changed_options(_args("--max_dataset_size", "65"), tmp_path / "train_opt.txt",
                           ("max_dataset_size",)) == f"--max_dataset_size {saved} -> 65"
