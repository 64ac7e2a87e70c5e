"""What the benchmark's end-to-end section prints: the trainer's lines, but none that name the
job's temporary folder. Before: each job printed where `fastp2p train` had put its checkpoints,
samples, loss plot, loss log and page, lines pointing into a folder removed when the job ended;
the trainer now leaves them out of its summary when the job asks (no filter of the text)."""
import pytest

from fastp2p.bench.end_to_end import EndToEndSettings, end_to_end_job
from fastp2p.bench.networks import QUICK_CONFIG

TEMPORARY = "fastp2p-bench-e2e-"  # the job folder's prefix


@pytest.mark.parametrize("processes", [1, 2])
def test_no_printed_line_names_the_jobs_temporary_folder(capfd, processes):
    settings = EndToEndSettings(QUICK_CONFIG, (1,), 2, 1, "cpu", (processes,))
    (row,) = end_to_end_job(1, processes, settings).run()
    assert row["images_per_s"] > 0
    out, err = capfd.readouterr()
    assert [line for line in (out + err).splitlines() if TEMPORARY in line] == []
    assert "training e2e-b1: " in out  # the trainer's other lines are printed
    assert "images/s over " in out  # (rank 0's: spawned, with two processes)
