"""`fastp2p bench --plot RUN.json | head -5`: the reader of stdout goes away before the table
is printed; the command ended in a BrokenPipeError traceback (and an "Exception ignored"
one as the interpreter flushed stdout at exit). It stops quietly instead, with the exit code
of a process that SIGPIPE ends, 128 + 13, as its other stops report 128 + the signal."""
import copy
import json
import signal
import subprocess
import sys

from test_bench_plot_files import RESULTS

# far more than a pipe's buffer (64 KiB on Linux), so the printing blocks until the reader
# has read or gone
MICRO_ROWS = 3000


def test_a_table_piped_into_a_reader_that_leaves_early_ends_quietly(tmp_path):
    results = copy.deepcopy(RESULTS)
    results["micro"] = [{"module": "bench_losses", "name": f"case {number}", "status": "ok",
                         "median_ms": 0.5, "gbps": 12.0} for number in range(MICRO_ROWS)]
    path = tmp_path / "cpu-20261204-abc1234-quick.json"
    path.write_text(json.dumps(results))
    bench = subprocess.Popen([sys.executable, "-m", "fastp2p", "bench", "--plot", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert bench.stdout.readline().startswith(b"wrote ")  # as head -1 does
    bench.stdout.close()
    err = bench.stderr.read().decode()
    assert bench.wait(timeout=120) == 128 + signal.SIGPIPE, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert path.with_suffix(".md").is_file()  # the files were written first
