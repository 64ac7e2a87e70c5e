"""SIGTERM during `fastp2p pack --verify` ends it as it ends a pack: one line, exit 143. verify
ran with SIGTERM at its default action, which the kernel drops for a container's PID 1, so
`docker stop` waited for its SIGKILL (elsewhere the run ended silently, with -15)."""
import signal
import subprocess
import sys

from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args

# verify, with a SIGTERM sent to itself as it checks the first pack's shards
_VERIFY_TAKING_A_SIGTERM = """\
import signal, sys
from fastp2p.cli import main
from fastp2p.data import packed_index

def bad_shard_files(*args, **kwargs):
    signal.raise_signal(signal.SIGTERM)
    return iter(())

packed_index.bad_shard_files = bad_shard_files
sys.exit(main(["pack", "--verify", sys.argv[1], "--no-progress"]))
"""


def test_sigterm_stops_verify_in_one_line(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2, phase="train")
    assert main(tiny_pack_args(data, out)) == 0
    run = subprocess.run([sys.executable, "-c", _VERIFY_TAKING_A_SIGTERM, str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, (run.returncode, run.stderr)
    assert run.stderr == ("fastp2p pack: stopped by SIGTERM; --verify changed nothing: run it "
                          "again to check the pack\n")
    assert run.stdout == ""
