"""A bench run that begins or ends on a busy machine says so above its table, and its results
record the load (QA r54: at load 4.5 on 2 cores, a quick run put fastp2p's inference
anywhere from 0.09x to 2.4x the reference, without a word; a load that came between peers'
jobs put fastp2p's training at 0.07x, then 10.24x the reference)."""
import io

import pytest

from fastp2p.bench import machine_load, suite
from fastp2p.bench.environment import describe
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.render import markdown
from fastp2p.bench.runner import Log

RESULTS = {"mode": "full", "complete": True,
           "environment": {"device": "cpu", "date_utc": "2026-12-06 10:00", "date": "20261206",
                           "commit": "abc1234", "python": "3.11.7", "torch": "2.13.0"},
           "config": {"network_description": "unet_256", "steps": 50, "warmup": 10},
           "training": []}


@pytest.mark.parametrize("load, cpus, busy", [
    (4.5, 2, True), (1.0, 2, True), (0.99, 2, False), (3.9, 8, False), (None, 2, False),
    (5.0, None, False)])
def test_busy_is_a_load_of_half_the_usable_cpus(load, cpus, busy):
    note = machine_load.busy_note({"load_average": load, "usable_cpus": cpus})
    assert (note is not None) == busy
    if busy:
        assert note.startswith(f"load average {load:.1f} on {cpus} usable CPU(s)")


def test_the_table_says_a_run_began_on_a_busy_machine():
    busy = {**RESULTS, "environment": {**RESULTS["environment"], "load_average": 4.5,
                                       "usable_cpus": 2}}
    assert "**Busy machine**: load average 4.5 on 2 usable CPU(s)" in markdown(busy)
    idle = {**RESULTS, "environment": {**RESULTS["environment"], "load_average": 0.2,
                                       "usable_cpus": 2}}
    assert "Busy machine" not in markdown(idle) and "Busy machine" not in markdown(RESULTS)


def test_results_record_the_load_and_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (3.456, 2.0, 1.0))
    env = describe("cpu", None)
    assert env["load_average"] == 3.46 and env["usable_cpus"] >= 1
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (_ for _ in ()).throw(OSError))
    assert describe("cpu", None)["load_average"] is None



def test_a_run_that_ends_on_a_busy_machine_is_flagged_busy(monkeypatch):
    """Idle when the run begins, busy after its (here skipped) job."""
    loads = iter([0.1])
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (next(loads, 9.0), 0.0, 0.0))
    monkeypatch.setattr(machine_load, "usable_cpus", lambda: 2)
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    settings = suite.SuiteSettings(
        quick=True, device="cpu", sections=("training",), config=QUICK_CONFIG, batch_sizes=(1,),
        steps=1, warmup=0, peers=(peer_by_name("reference"),), job_time_limit=None,
        time_budget=1e-9, benchmarks_dir=None, inference_rep_ms=1.0)
    results = suite.run_suite(settings, log=Log(io.StringIO()))
    assert results["environment"]["load_average"] == 0.1
    assert results["load_at_end"] == {"load_average": 9.0, "usable_cpus": 2}
    assert results["busy"] is True
    table = markdown(results)
    assert "**Busy machine**: load average 9.0 on 2 usable CPU(s) after its last job" in table
    assert "when the run began" not in table


def test_the_table_names_each_busy_moment():
    results = {**RESULTS, "load_at_end": {"load_average": 3.0, "usable_cpus": 2},
               "environment": {**RESULTS["environment"], "load_average": 4.5, "usable_cpus": 2}}
    table = markdown(results)
    assert table.count("**Busy machine**") == 2 and "after its last job" in table
