"""`fastp2p test` and `fastp2p bench` run in one process and refuse a torchrun job: before any
other check and before torch loads, by each node's first process (LOCAL_RANK 0, ``rank N: ``
off rank 0), as train says its refusals; every process exits 2. test's refusal was printed by
every process of the job; bench's came after torch's import and after bench's option checks,
so each process said a bad option in its place."""
import os
import subprocess
import sys

import pytest

# fastp2p.cli.main on argv, whose exit code becomes 3 where torch was loaded by the time the
# process exits (an atexit hook, as in test_usage_errors_before_torch)
RUN = ("import atexit, os, sys\n"
       "atexit.register(lambda: 'torch' in sys.modules and os._exit(3))\n"
       "from fastp2p.cli import main\n"
       "sys.exit(main(sys.argv[1:]))\n")

TEST_REFUSED = ("fastp2p test: error: fastp2p test translates in one process, on one device, but "
                "torchrun started 4 (WORLD_SIZE=4), each of which would translate every image "
                "into the same folder; run it without torchrun (--device cuda:N or --gpu_ids N "
                "picks the GPU)")
BENCH_REFUSED = ("fastp2p bench: error: fastp2p bench runs in one process, but torchrun started 4 "
                 "(WORLD_SIZE=4), each of which would run the whole benchmark; run it without "
                 "torchrun (--processes N times `fastp2p train` at N processes, which it spawns "
                 "itself)")

# each command line also holds an error of its own, which the refusal of the job comes before:
# test's --dataroot is no folder, bench's --quick is the CPU mode
COMMANDS = {"test": (["test", "--dataroot", "missing"], TEST_REFUSED),
            "bench": (["bench", "--quick", "--device", "cuda"], BENCH_REFUSED)}


# 2 nodes of 2 processes: ranks 0 and 1 on the first, 2 and 3 on the second
@pytest.mark.parametrize("rank, local_rank, prefix", [
    ("0", "0", ""), ("1", "1", None), ("2", "0", "rank 2: "), ("3", "1", None)])
@pytest.mark.parametrize("command", COMMANDS)
def test_the_refusal_of_the_job_is_said_first_once_per_node(tmp_path, command, rank,
                                                            local_rank, prefix):
    argv, refused = COMMANDS[command]
    env = {**os.environ, "WORLD_SIZE": "4", "RANK": rank, "LOCAL_RANK": local_rank}
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("" if prefix is None else f"{prefix}{refused}\n")
    assert result.stdout == ""
