"""`fastp2p bench` options say what they do: a name given twice runs once (a peer named twice
ran twice, its rows doubling fastp2p's ratios), `--micro ,` is refused (it ran every module),
a dangling --out link is named as one ("File exists" before), a fractional time limit is
printed as given ("0 s" for 0.3), and --help's count of torch.compile jobs is the count a GPU
run builds (it said 9 of 21)."""
import re
import time
from pathlib import Path

import pytest
import torch

from fastp2p.bench import command, suite
from fastp2p.bench.defaults import INFERENCE_COMPILE_MODES, TRAINING_BATCH_SIZES
from fastp2p.bench.networks import FULL_CONFIG
from fastp2p.bench.peer_specs import PEERS
from fastp2p.bench.runner import Job, Runner
from fastp2p.bench.timing import format_seconds
from helpers.bench_helpers import bench_args, quick_settings

CHECKOUT = Path(__file__).resolve().parents[1]


def test_a_peer_or_section_named_twice_runs_once_in_the_order_given():
    settings = quick_settings("--peers", "fastp2p,reference,fastp2p", "--sections",
                         "inference,training,inference")
    assert [peer.name for peer in settings.peers] == ["fastp2p", "reference"]
    assert settings.sections == ("inference", "training")


@pytest.mark.parametrize("value", [",", " , "])
def test_an_empty_micro_list_is_refused_not_read_as_every_module(value, capsys):
    with pytest.raises(SystemExit):
        quick_settings("--sections", "micro", "--micro", value)
    assert "argument --micro: takes a comma-separated list of bench_" in capsys.readouterr().err


def test_a_micro_module_named_twice_runs_once():
    settings = quick_settings("--micro", "bench_losses,bench_losses", "--benchmarks-dir",
                         str(CHECKOUT / "benchmarks"))
    assert settings.micro_modules == ("bench_losses",)


def test_a_dangling_out_link_is_named_as_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(command, "settings_from_args", lambda args: None)
    out = tmp_path / "results"
    out.symlink_to(tmp_path / "unmounted" / "disk")
    args = bench_args("--out", out)
    assert command.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "File exists" not in err, err
    assert f"{out} is a symbolic link to {tmp_path / 'unmounted' / 'disk'}, which does not " \
           "exist" in err


def test_a_fractional_time_limit_is_printed_as_given():
    (row,) = Runner(job_time_limit=0.3, log=lambda message: None).run(
        Job("training", "slow", lambda: time.sleep(5), {"peer": "a"}))
    assert row["status"] == "failed"
    assert row["error"] == "TimeLimitExceeded: time limit of 0.3 s exceeded"


@pytest.mark.parametrize("seconds, said", [(0.125, "0.125"), (1.75, "1.75"), (1e-5, "0.00001"),
                                           (240.0, "240"), (604800, "604800"), (0.3, "0.3")])
def test_a_time_limit_is_printed_as_given(seconds, said):
    # "0.12" for 0.125, "1.8" for 1.75, "1e-05" for 1e-5 before
    assert format_seconds(seconds) == said


def test_a_fractional_budget_cut_is_printed_as_it_was():
    (row,) = Runner(time_budget=0.3, log=lambda message: None).run(
        Job("training", "slow", lambda: time.sleep(5), {"peer": "a"}))
    assert row["status"] == "skipped"
    # the seconds it ran: 0.3 and a little (the alarm may be late on a busy machine), not "0"
    assert re.fullmatch(r"cut by --time-budget after 0\.\d+ s", row["error"]), row["error"]


def test_help_counts_the_compile_jobs_a_default_gpu_run_builds(monkeypatch):
    # building (not running) the jobs touches no GPU but the PDL peer's capability check
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    settings = suite.SuiteSettings(
        quick=False, device="cuda", sections=suite.SECTIONS, config=FULL_CONFIG,
        batch_sizes=TRAINING_BATCH_SIZES, steps=50, warmup=10, peers=PEERS,
        job_time_limit=None, time_budget=None, benchmarks_dir=None, inference_rep_ms=500.0)
    jobs, _ = suite.plan_jobs(settings)
    # a training peer's execution is "compile"; an inference variant's, its compile mode
    compiled = [job for job in jobs if job.identity.get("execution") == "compile"
                or (job.section == "inference"
                    and job.identity["execution"] in INFERENCE_COMPILE_MODES)]
    (said,) = re.findall(r"(\d+) torch\.compile\s+jobs", command.EPILOG)
    assert int(said) == len(compiled) > 0
