"""Ctrl-C from the very start of a `fastp2p` command is one line and exit code 130.

Before: Ctrl-C while the parser was built (every command's module imported) or while an option
was checked (--load_size, --crop_size, --num_threads and pack's --workers imported numpy and
torch, a second on a busy machine) printed a KeyboardInterrupt traceback of 24-90 lines, the
process killed by SIGINT: fastp2p.cli.main caught a Ctrl-C only once the command ran. Each
Ctrl-C here is sent as a module starts to import, never by a timer."""
import signal
import subprocess
import sys

import pytest

from helpers.train_helpers import write_aligned_dataset

# `python -m fastp2p ARGV` after a hook that sends this process SIGINT (a terminal's Ctrl-C) as
# the module sys.argv[1] starts to import: from another process, as a Ctrl-C comes (the kernel
# sends it), since a SIGINT this process sends itself around numpy's import is OpenBLAS's
# (fastp2p.import_threads)
CTRL_C_AT_IMPORT = """\
import os, runpy, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background start may ignore it
module = sys.argv.pop(1)

class CtrlCAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            subprocess.run(["kill", "-INT", str(os.getpid())], check=True)
        return None

sys.meta_path.insert(0, CtrlCAtImport())
runpy.run_module("fastp2p", run_name="__main__", alter_sys=True)
"""

CASES = {  # id: (the module whose import is interrupted, argv, the line expected)
    # the parser's build: no command read yet
    "building the parser": ("fastp2p.data.pack_command", ["info"], "fastp2p: stopped (Ctrl-C)"),
    # the README's own `fastp2p train --load_size 286`
    "train --load_size": ("torch", ["train", "--dataroot", "dataset", "--load_size", "286",
                                    "--crop_size", "256"], "fastp2p train: stopped (Ctrl-C)"),
    "train --num_threads": ("torch", ["train", "--dataroot", "dataset", "--num_threads", "1"],
                            "fastp2p train: stopped (Ctrl-C)"),
    "test --crop_size": ("torch", ["test", "--dataroot", "dataset", "--load_size", "64",
                                   "--crop_size", "64"], "fastp2p test: stopped (Ctrl-C)"),
    # pack imports no torch: numpy is the first heavy module it imports
    "pack --workers": ("numpy", ["pack", "--synthetic", "4", "pairs", "packed", "--load_size",
                                 "64", "--workers", "1"], "fastp2p pack: stopped (Ctrl-C)"),
    "info": ("torch", ["info"], "fastp2p info: stopped (Ctrl-C)"),
    "bench": ("torch", ["bench", "--quick", "--out", "results", "--peer-time-limit", "60"],
              "fastp2p bench: stopped (Ctrl-C); nothing was saved"),
}


@pytest.mark.parametrize("case", CASES)
def test_ctrl_c_from_the_start_is_one_line_and_exit_code_130(tmp_path, case):
    module, argv, line = CASES[case]
    # a real dataset: train refuses a missing or empty split before torch loads
    write_aligned_dataset(tmp_path / "dataset", pairs=1)
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, module, *argv],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.stderr.splitlines() == [line], result.stderr
    assert result.returncode == 128 + signal.SIGINT
    assert not (tmp_path / "pairs").exists()  # pack stopped before it wrote anything


def test_checking_the_image_sides_imports_neither_numpy_nor_torch(tmp_path):
    """--load_size and --crop_size are checked against option_types.MAX_LOAD_SIZE; the bound
    lived in fastp2p.data.packed, whose numpy and torch parsing imported (the window above, and a
    second's wait for `--load_size 0`'s one-line error)."""
    parse = ("import sys\n"
             "from fastp2p.cli import build_parser\n"
             "build_parser().parse_args(['train', '--load_size', '64', '--crop_size', '64'])\n"
             "print(sorted({'numpy', 'torch'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", parse], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
