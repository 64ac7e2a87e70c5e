"""The training table says each peer's precision and layout (on a CPU eager-tuned is bf16
autocast channels-last, fastp2p fp32 NCHW: a ratio between them is not like for like), and the
run's notes name the peers of the default set a CPU run leaves out."""
import pytest

from fastp2p.bench.render import markdown
from helpers.bench_helpers import quick_settings

RESULTS = {"mode": "quick", "complete": True,
           "environment": {"device": "cpu", "date_utc": "2026-12-06 10:00", "date": "20261206",
                           "commit": "abc1234", "python": "3.11.7", "torch": "2.13.0"},
           "config": {"network_description": "unet_64", "steps": 3, "warmup": 1}}


def _training_row(peer, precision, channels_last, status="ok"):
    figures = {"images_per_s": 2.0, "images_per_s_p20": 1.5, "images_per_s_p80": 2.5,
               "step_ms": 500.0, "setup_seconds": 1.0}
    return {"peer": peer, "precision": precision, "channels_last": channels_last,
            "batch_size": 1, "status": status, **(figures if status == "ok" else
                                                   {"error": "boom"})}


def test_the_training_table_has_a_precision_column():
    table = markdown({**RESULTS, "training": [
        _training_row("eager-tuned", "bf16", True), _training_row("fastp2p", "fp32", False),
        _training_row("reference", "fp32", False, status="failed")]})
    assert "| peer | precision | batch | images/s (median) |" in table
    assert "| eager-tuned | bf16, channels-last | 1 | 2.0 |" in table
    assert "| fastp2p | fp32 | 1 | 2.0 |" in table
    assert "| reference | fp32 | 1 | failed: boom |" in table


@pytest.mark.parametrize("sections, noted", [("training", True), ("inference", False)])
def test_a_cpu_run_names_the_default_peers_it_leaves_out(sections, noted):
    notes = quick_settings("--sections", sections).option_notes
    left_out = [note for note in notes if note.startswith("training: peers of the default set")]
    assert bool(left_out) == noted
    if noted:
        (note,) = left_out
        assert "cuda-graph" in note and "fastp2p-pdl" in note and "need a CUDA GPU" in note
        assert "compile-default" in note and "only when --peers names them" in note
        assert "eager-tuned" not in note


def test_named_peers_get_no_such_note():
    notes = quick_settings("--sections", "training", "--peers", "reference").option_notes
    assert not any("peers of the default set" in note for note in notes)
