"""--num_threads and pack's --workers are checked against the cores this process may run on
(fastp2p.cpu_info.usable_cpus) while the command line is parsed. usable_cpus lived in
fastp2p.data.pack, so checking either option imported numpy and torch (a second on a busy
machine, and a window where Ctrl-C interrupted their import: test_cli_early_ctrl_c.py)."""
import subprocess
import sys

import pytest

PARSE = ("import sys\n"
         "from fastp2p.cli import build_parser\n"
         "args = build_parser().parse_args(sys.argv[1:])\n"
         "print(sorted({'numpy', 'torch'} & set(sys.modules)))\n")


@pytest.mark.parametrize("argv", [
    ["train", "--dataroot", "nowhere", "--num_threads", "2"],
    ["test", "--dataroot", "nowhere", "--num_threads", "2"],
    ["pack", "pairs", "packed", "--workers", "2"],
], ids=["train --num_threads", "test --num_threads", "pack --workers"])
def test_checking_a_worker_count_imports_neither_numpy_nor_torch(tmp_path, argv):
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", PARSE, *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_worker_count_bound_reads_the_cores_from_cpu_info(monkeypatch):
    """Tests (and anything else) that change the count change it in one place."""
    import argparse

    from fastp2p.option_types import loader_workers, pack_workers

    monkeypatch.setattr("fastp2p.cpu_info.usable_cpus", lambda: 6)
    for parse in (loader_workers, pack_workers):
        assert parse("6") == 6
        with pytest.raises(argparse.ArgumentTypeError, match="6 core"):
            parse("7")
