"""The ratios the benchmark report prints compare like with like:

- inference: a peer's ``fastp2p_ratio`` is the fastest fastp2p variant of the same case, and a
  CPU case is its thread count too (a 2-thread peer is never divided into a 16-thread fastp2p);
- end to end: ``ratio_to_step_only`` is one process's share (the row's images/s over its
  processes) against the step alone, so N processes are not credited N times.
"""
import pytest

from fastp2p.bench.end_to_end import finalize_end_to_end_rows
from fastp2p.bench.inference import finalize_inference_rows


def _cpu_row(module, threads, images_per_s, status="ok"):
    return dict(module=module, device="cpu", batch_size=1, mode="eval", threads=threads,
                status=status, images_per_s=images_per_s, precision="fp32", channels_last=True)


def test_cpu_inference_ratios_are_per_thread_count():
    rows = finalize_inference_rows([
        _cpu_row("fastp2p.UNet", 2, 10.0), _cpu_row("fastp2p.UNet", 16, 100.0),
        _cpu_row("reference", 2, 4.0), _cpu_row("reference", 16, 50.0),
        _cpu_row("reference compile", 2, 5.0)])
    ratios = {(r["module"], r["threads"]): r["fastp2p_ratio"] for r in rows}
    assert ratios[("reference", 2)] == pytest.approx(2.5)
    assert ratios[("reference", 16)] == pytest.approx(2.0)
    assert ratios[("reference compile", 2)] == pytest.approx(2.0)
    assert ratios[("fastp2p.UNet", 2)] is None and ratios[("fastp2p.UNet", 16)] is None


def test_a_thread_count_without_a_fastp2p_row_gets_no_ratio():
    rows = finalize_inference_rows([_cpu_row("fastp2p.UNet", 16, 100.0),
                                    _cpu_row("fastp2p.UNet", 2, 0.0, status="failed"),
                                    _cpu_row("reference", 2, 4.0)])
    (peer,) = [r for r in rows if r["module"] == "reference"]
    assert peer["fastp2p_ratio"] is None


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_end_to_end_ratio_is_per_process(processes):
    training = [{"peer": "fastp2p", "batch_size": 2, "status": "ok", "images_per_s": 50.0},
                {"peer": "reference", "batch_size": 2, "status": "ok", "images_per_s": 5.0}]
    total = 40.0 * processes   # every process at 40 images/s
    (row,) = finalize_end_to_end_rows([{"batch_size": 2, "processes": processes, "status": "ok",
                                        "images_per_s": total}], training)
    assert row["step_only_images_per_s"] == 50.0
    assert row["ratio_to_step_only"] == pytest.approx(0.8)
