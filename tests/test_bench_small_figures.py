"""The bench table keeps two significant digits of a small figure: a CPU's float32 matmul
rate of 0.03 TFLOP/s was printed "0.0 TFLOP/s" (one decimal for every rate), and so were
slow images/s, bandwidths and shares; large figures keep their fixed decimals."""
import pytest

from fastp2p.bench import render

OK = {"status": "ok", "images_per_s_p20": 0.0029, "images_per_s_p80": 0.0033}
RESULTS = {
    "mode": "quick",
    "environment": {"device": "cpu", "date_utc": "2026-12-04 10:00", "date": "20261204",
                    "commit": "abc1234", "python": "3.11.9", "torch": "2.13.0"},
    "config": {"network_description": "unet_64 ngf 8", "steps": 3, "warmup": 1},
    "ceilings": {"matmul": {"dtype": "float32", "tflops": 0.0312, "size": 512},
                 "copy": {"gbps": 0.0041}},
    "training": [{"peer": "fastp2p", "precision": "fp32", "channels_last": False,
                  "batch_size": 1, **OK, "images_per_s": 0.0031,
                  "step_ms": 322580.6, "mfu": 0.00042},
                 {"peer": "reference", "batch_size": 1, **OK, "images_per_s": 12345.67,
                  "step_ms": 0.081}],
    "inference": [], "end_to_end": [],
    "micro": [{"module": "bench_losses", "name": "l1", "status": "ok", "median_ms": 0.000123,
               "gbps": 0.047, "copy_fraction": 0.00021}],
}


@pytest.mark.parametrize("number, digits, scale, shown", [
    (0.03, 1, 1.0, "0.03"), (0.0312, 1, 1.0, "0.031"), (0.0031, 1, 1.0, "0.0031"),
    (0.14, 1, 1.0, "0.14"), (0.5, 1, 1.0, "0.5"), (0.996, 1, 1.0, "1.0"), (0.0, 1, 1.0, "0.0"),
    (989.44, 1, 1.0, "989.4"), (12345.67, 1, 1.0, "12,345.7"), (5.3, 0, 1.0, "5"),
    (0.4, 0, 1.0, "0.4"), (0.00021, 0, 100, "0.021"), (0.000123, 4, 1.0, "0.00012"),
    (0.1234, 4, 1.0, "0.1234"), (-0.03, 1, 1.0, "-0.03")])
def test_a_number_keeps_two_significant_digits_below_one(number, digits, scale, shown):
    assert render._number(number, digits, scale) == shown


def test_the_table_shows_small_ceilings_and_rates_not_zero():
    table = render.markdown(RESULTS)
    assert "float32 matmul 0.031 TFLOP/s (512³)" in table
    assert "device-to-device copy 0.0041 GB/s" in table
    assert "| fastp2p | fp32 | 1 | 0.0031 | 0.0029–0.0033 | 322,580.60 |" in table
    # large figures as before; a row from before precision was recorded
    assert "| reference | – | 1 | 12,345.7 |" in table
    assert "| 0.042% |" in table  # MFU
    assert "| bench_losses | l1 | 0.00012 | – | 0.047 | 0.021% |" in table
