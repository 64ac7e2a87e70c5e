"""`fastp2p pack --workers N` killed with SIGKILL (no handler runs): its worker processes die
with it (Linux), instead of finishing their shards for nobody and printing broken-pipe
tracebacks; the re-run resumes as always (tests/test_pack_rerun.py)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="parent-death signals are Linux's (prctl)")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")      # a zombie has died (nobody may reap it here)


def test_killing_pack_kills_its_workers(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "train").mkdir(parents=True)
    for index in range(40):
        pixels = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "data" / "train" / f"{index:02d}.png")
    # large load size, one pair per shard: each shard takes a while, so the kill lands mid-pack
    run = subprocess.Popen([sys.executable, "-m", "fastp2p", "pack", str(tmp_path / "data"),
                            str(tmp_path / "out"), "--workers", "2", "--load_size", "1200",
                            "--pairs-per-shard", "1", "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, "OMP_NUM_THREADS": "1"},
                           cwd=tmp_path)    # not the checkout: its fastp2p/ would shadow
    #                                         the installed package
    deadline = time.monotonic() + 60
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
        workers = [pid for pid in _children(run.pid) if _alive(pid)]
    assert len(workers) == 2, ("the pack's two workers did not start",
                               run.poll(), run.stderr.read() if run.poll() is not None else b"")
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived the killed pack"
    assert b"Traceback" not in run.stderr.read()
