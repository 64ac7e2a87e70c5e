"""Figures of `fastp2p bench` that no other CPU test pinned down (found by mutating the harness
by hand): the units and percentiles of a timing, the event pairing of CUDA timings (checked
with stand-in events), the FLOP count and the ceilings MFU is read against, what a run
records of its own settings and environment, the table's header and rows, the stop handlers
after a stop, and each mode's limits. A mutant of each survived the other tests."""
import io
import signal
import time

import pytest
import torch

from fastp2p.bench import ceilings, suite, timing
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Job, Log, Runner
from fastp2p.bench.timing import Timing, time_steps


def test_throughput_is_items_per_second_with_the_fast_calls_as_its_p80():
    rates = Timing(median_ms=20.0, p20_ms=10.0, p80_ms=40.0, count=5).throughput(4)
    # 4 images in 20 ms: 200 images/s; the p20 of time (fast calls) is the p80 of throughput
    assert rates == {"images_per_s": 200.0, "images_per_s_p20": 100.0,
                     "images_per_s_p80": 400.0}


def test_cpu_step_timings_are_in_milliseconds():
    result = time_steps(lambda: time.sleep(0.01), device="cpu", warmup=0, steps=3)
    assert result.count == 3 and 8 < result.median_ms < 200


class _FakeEvent:
    """torch.cuda.Event's timing interface on the host clock: elapsed_time in ms."""

    def __init__(self, enable_timing=True):
        self.at = None

    def record(self):
        self.at = time.perf_counter()

    def elapsed_time(self, end):
        return (end.at - self.at) * 1e3


@pytest.fixture
def fake_cuda_events(monkeypatch):
    monkeypatch.setattr(timing, "_is_cuda", lambda device: True)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)


def test_cuda_step_timings_span_one_step_each(fake_cuda_events):
    # steps of 10, 20, ... 50 ms: median 30 (timed from the first step's start: 10, 30, 60, ..)
    lengths = iter([0.01, 0.02, 0.03, 0.04, 0.05])
    result = time_steps(lambda: time.sleep(next(lengths)), device="cuda", warmup=0, steps=5)
    assert result.count == 5 and 28 < result.median_ms < 55


def test_a_job_under_a_time_limit_leaves_no_alarm_armed():
    # an alarm left armed went off in a later job, or ended the process (SIGALRM's default)
    rows = Runner(job_time_limit=30, log=lambda message: None).run(
        Job("micro", "fast", lambda: [{"name": "x"}]))
    assert rows[0]["status"] == "ok"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_rows_wall_time_is_in_seconds():
    (row,) = Runner(log=lambda message: None).run(
        Job("micro", "sleeps", lambda: (time.sleep(0.2), [{}])[1]))
    assert 0.15 < row["wall_seconds"] < 5


def test_a_runs_results_record_its_settings_and_read_mfu_against_its_ceilings(monkeypatch):
    flop_model = {"train_step_gflop_per_image": 3.0, "generator_forward_gflop": 0.5,
                  "discriminator_forward_gflop": 0.25, "design_estimate_gflop_per_image": 87.0}
    monkeypatch.setattr(suite, "training_step_flops", lambda config: dict(flop_model))
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {
        "matmul": {"tflops": 2.0, "dtype": "float32", "size": 8}, "copy": {"gbps": 1.0}})

    def job(peer, images_per_s):
        return Job("training", peer, lambda: [{"images_per_s": images_per_s}],
                   {"peer": peer, "batch_size": 4})
    monkeypatch.setattr(suite, "plan_jobs", lambda settings: (
        [job("reference", 100.0), job("fastp2p", 400.0)], []))
    peers = (peer_by_name("reference"), peer_by_name("fastp2p"))
    settings = suite.SuiteSettings(
        quick=True, device="cpu", sections=("training",), config=QUICK_CONFIG,
        batch_sizes=(4,), steps=7, warmup=2, peers=peers, job_time_limit=30.0,
        time_budget=600.0, benchmarks_dir=None, inference_rep_ms=1.0)
    results = suite.run_suite(settings, log=Log(io.StringIO()))
    config = results["config"]
    assert (config["steps"], config["warmup"]) == (7, 2)
    assert (config["job_time_limit_s"], config["time_budget_s"]) == (30.0, 600.0)
    assert list(results["peers"]) == ["reference", "fastp2p"]
    reference, fastp2p = results["training"]
    # 100 images/s x 3 GFLOP = 0.3 TFLOP/s, over the 2 TFLOP/s matmul rate
    assert reference["model_tflops"] == pytest.approx(0.3)
    assert reference["mfu"] == pytest.approx(0.15) and fastp2p["mfu"] == pytest.approx(0.6)
    assert reference["fastp2p_ratio"] == pytest.approx(4.0)


def test_compiled_training_jobs_take_the_largest_batch_then_the_smallest_then_the_rest():
    """max-autotune, the slowest to build, after the other compiled peers."""
    from fastp2p.bench.training import TrainingSettings, training_jobs

    settings = TrainingSettings(QUICK_CONFIG, (1, 16, 64), steps=1, warmup=0, device="cpu")
    _, compiled = training_jobs((peer_by_name("compile-max-autotune"),
                                 peer_by_name("compile-default")), settings)
    assert [(job.identity["peer"], job.identity["batch_size"]) for job in compiled] == [
        ("compile-default", 64), ("compile-default", 1), ("compile-default", 16),
        ("compile-max-autotune", 64), ("compile-max-autotune", 1), ("compile-max-autotune", 16)]


def test_a_training_rows_images_per_s_counts_every_image_of_the_batch(monkeypatch):
    from fastp2p.bench import training
    from fastp2p.bench.training import TrainingSettings, training_job

    # steps of 5, 10, ... 25 ms: median 15 ms, a p20 well apart from it
    lengths = iter([0.005, 0.01, 0.015, 0.02, 0.025])
    monkeypatch.setattr(training, "build_peer_step", lambda *args, **kwargs: (
        lambda: time.sleep(next(lengths, 0.0))))
    settings = TrainingSettings(QUICK_CONFIG, (4,), steps=5, warmup=0, device="cpu")
    (row,) = training_job(peer_by_name("reference"), 4, settings).run()
    assert row["steps"] == 5 and 14 < row["step_ms"] < 60
    assert row["images_per_s"] == pytest.approx(4 * 1e3 / row["step_ms"])
    assert 0 <= row["setup_seconds"] < 60


def test_an_inference_rows_images_per_s_counts_every_image_of_the_batch(monkeypatch):
    from fastp2p.bench import inference
    from fastp2p.bench.inference import InferenceCase, Variant, inference_job

    monkeypatch.setattr(inference, "benchmark",
                        lambda call, **kwargs: Timing(10.0, 8.0, 12.5, 20))
    variant = Variant("reference", False, "eager", "fp32", False)
    job = inference_job(variant, InferenceCase("cpu", 4, train=True), QUICK_CONFIG, rep_ms=1.0)
    (row,) = job.run()
    assert (row["ms"], row["calls"]) == (10.0, 20)
    assert row["images_per_s"] == 400.0
    assert (row["images_per_s_p20"], row["images_per_s_p80"]) == (320.0, 500.0)


def test_a_failed_fastp2p_row_leaves_the_peers_without_a_ratio():
    from fastp2p.bench.training import finalize_training_rows

    rows = finalize_training_rows(
        [{"peer": "reference", "batch_size": 1, "status": "ok", "images_per_s": 10.0},
         {"peer": "fastp2p", "batch_size": 1, "status": "failed", "error": "out of memory"}],
        peer_order=("reference", "fastp2p"), gflop_per_image=1.0, matmul_tflops=1.0)
    assert [(row["peer"], row["fastp2p_ratio"]) for row in rows] == [
        ("reference", None), ("fastp2p", None)]


def test_training_rows_come_in_peer_order_then_by_batch_size():
    from fastp2p.bench.training import finalize_training_rows

    rows = [{"peer": peer, "batch_size": batch, "status": "failed"}
            for peer, batch in (("fastp2p", 64), ("reference", 64), ("fastp2p", 1),
                                ("reference", 1))]
    rows = finalize_training_rows(rows, peer_order=("reference", "fastp2p"),
                                  gflop_per_image=1.0, matmul_tflops=1.0)
    assert [(row["peer"], row["batch_size"]) for row in rows] == [
        ("reference", 1), ("reference", 64), ("fastp2p", 1), ("fastp2p", 64)]


def test_a_failed_inference_row_gets_no_ratio_beside_a_measured_fastp2p():
    from fastp2p.bench.inference import finalize_inference_rows

    case = {"device": "cpu", "batch_size": 1, "mode": "eval", "threads": 2,
            "precision": "fp32", "channels_last": False}
    rows = finalize_inference_rows([
        {**case, "module": "fastp2p", "status": "ok", "images_per_s": 10.0},
        {**case, "module": "reference", "status": "failed", "error": "out of memory"}])
    assert rows[1]["fastp2p_ratio"] is None


def test_cpu_inference_cases_run_at_two_threads_and_at_every_usable_core(monkeypatch):
    """Every core the process may use: a container's CPU quota (here 6 of the host's 16) caps
    the count, as it caps the training's threads (os.cpu_count() timed the host's 16)."""
    from fastp2p import cpu_info
    from fastp2p.bench import inference

    monkeypatch.setattr(cpu_info.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(cpu_info, "cpu_quota", lambda: 5.5)
    cases = inference.inference_cases("cpu", quick=False)
    assert sorted({case.threads for case in cases}) == [2, 6]


def test_an_fp32_output_off_the_reference_by_a_thousandth_fails_its_check():
    from fastp2p.bench.inference import _check_against_reference
    from fastp2p.bench.networks import build_generator, make_batch
    from fastp2p.reference import init_weights

    image, _ = make_batch(QUICK_CONFIG, 1, "cpu")
    torch.manual_seed(0)  # the weights _check_against_reference builds its reference with
    reference = init_weights(build_generator(QUICK_CONFIG, fast=False), "normal", 0.02).eval()
    with torch.no_grad():
        output = reference(image) * 1.001
    with pytest.raises(AssertionError, match="relative error 1.00e-03 > 1e-04"):
        _check_against_reference(output, QUICK_CONFIG, image)
    # bf16's bound (DESIGN §5) is wider
    assert _check_against_reference(output.bfloat16(), QUICK_CONFIG, image) < 2e-2


def _rank_figures(images_per_s):
    figures = {"images_per_s": images_per_s, "window_steps": 4, "window_s": 2.0}
    for stage, calls, seconds in (("data", 4, 0.5), ("step", 4, 1.0), ("log", 2, 0.1),
                                  ("sample", 1, 0.2), ("checkpoint", 0, 0.0)):
        figures.update({f"{stage}_calls": calls, f"{stage}_s": seconds,
                        f"{stage}_share": seconds / 2.0})
    return figures


def test_an_end_to_end_row_totals_the_ranks_and_gives_each_stage_in_ms_per_call(monkeypatch):
    from fastp2p.bench import end_to_end

    packed = []
    monkeypatch.setattr(end_to_end, "make_packed_set",
                        lambda root, pairs, load: packed.append(pairs) or root)
    monkeypatch.setattr(end_to_end, "run_processes", lambda argv, skip, world_size, work: [
        {"code": 0, **_rank_figures(30.0)}, {"code": 0, **_rank_figures(10.0)}])
    settings = end_to_end.EndToEndSettings(QUICK_CONFIG, (3,), steps=4, warmup=2, device="cpu",
                                           processes=(2,))
    (row,) = end_to_end.end_to_end_job(3, 2, settings).run()
    assert packed == [(2 + 4) * 3 * 2]  # one epoch: every step of every rank
    assert row["images_per_s"] == 40.0 and row["per_rank_images_per_s"] == [30.0, 10.0]
    assert row["data_ms_per_call"] == pytest.approx(125.0)
    assert row["sample_ms_per_call"] == pytest.approx(200.0)
    assert row["checkpoint_ms_per_call"] is None
    assert (row["display_freq"], row["save_latest_freq"]) == (1 * 6, 2 * 6)  # in images


def test_end_to_end_rows_without_a_fastp2p_step_figure_get_no_ratio():
    from fastp2p.bench.end_to_end import finalize_end_to_end_rows

    training = [{"peer": "fastp2p", "batch_size": 2, "status": "failed", "error": "x"},
                {"peer": "reference", "batch_size": 2, "status": "ok", "images_per_s": 5.0}]
    (row,) = finalize_end_to_end_rows(
        [{"batch_size": 2, "processes": 1, "status": "ok", "images_per_s": 4.0}], training)
    assert row["step_only_images_per_s"] is None and row["ratio_to_step_only"] is None


def test_each_rank_of_a_multi_process_job_gets_its_share_of_the_threads(monkeypatch, tmp_path):
    import json

    from fastp2p.bench import end_to_end

    def run_ranks(rank_main, args, world_size):
        world, _, _, _, out, threads = args
        seen.append(threads)
        for rank in range(world):
            (tmp_path / f"rank{rank}.json").write_text(json.dumps(
                {"code": 0, **_rank_figures(1.0)}))
    seen = []
    monkeypatch.setattr(end_to_end, "run_ranks", run_ranks)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert len(end_to_end.run_processes(["train"], 1, 3, tmp_path)) == 3
    assert seen == [2]


def test_the_step_flops_count_each_pass_of_pix2pixs_step():
    from fastp2p.bench.flops import layer_forward_flops, training_step_flops
    from fastp2p.bench.networks import build_discriminator, build_generator

    size = QUICK_CONFIG.image_size
    g = layer_forward_flops(build_generator(QUICK_CONFIG, fast=False),
                            torch.empty(1, QUICK_CONFIG.input_nc, size, size))
    d = layer_forward_flops(build_discriminator(QUICK_CONFIG, fast=False), torch.empty(
        1, QUICK_CONFIG.input_nc + QUICK_CONFIG.output_nc, size, size))
    # G: forward, weight gradients, input gradients but the first layer's
    generator = sum(g) + sum(g) + sum(g[1:])
    # D: 3 forwards; the D step's 2 backwards (weight gradients, input gradients but the first
    # layer's); the G step's backward (input gradients of every layer, no weight gradients)
    discriminator = 3 * sum(d) + 2 * (sum(d) + sum(d[1:])) + sum(d)
    flops = training_step_flops(QUICK_CONFIG)
    assert flops["train_step_gflop_per_image"] * 1e9 == pytest.approx(generator + discriminator,
                                                                      rel=1e-12)
    assert flops["generator_forward_gflop"] * 1e9 == pytest.approx(sum(g), rel=1e-12)


def test_ceilings_count_a_copys_read_and_write_and_a_matmuls_multiply_adds(monkeypatch):
    # sizes no other test measures: the cache keeps these stand-in timings to them
    monkeypatch.setattr(ceilings, "benchmark", lambda fn, **kwargs: Timing(2.0, 1.5, 2.5, 10))
    copy = ceilings.copy_bandwidth("cpu", nbytes=1000)
    assert copy["bytes"] == 2000 and copy["gbps"] == pytest.approx(2000 / 2e-3 / 1e9)
    matmul = ceilings.matmul_rate("cpu", size=100)
    assert matmul["dtype"] == "float32"  # a CPU's rate is fp32's, what it trains in
    assert matmul["tflops"] == pytest.approx(2 * 100 ** 3 / 2e-3 / 1e12)


def test_kernel_counts_are_per_step_over_the_profiled_steps(monkeypatch):
    from types import SimpleNamespace

    from fastp2p.bench import launches

    cuda = torch.autograd.DeviceType.CUDA
    events = ([SimpleNamespace(device_type=cuda, name="conv_kernel")] * 12
              + [SimpleNamespace(device_type=cuda, name="Memcpy DtoD")] * 3)

    class Profile:  # torch.profiler.profile's interface, with the events of 3 steps
        def __init__(self, activities):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def events(self):
            return events
    monkeypatch.setattr(launches, "profile", Profile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    calls = []
    assert launches.device_work_per_step(lambda: calls.append(1), "cuda", steps=3) == {
        "kernels_per_step": 4.0, "memory_ops_per_step": 1.0}
    assert len(calls) == 3


def test_a_micro_rows_own_device_and_bandwidth_are_kept_and_read_against_that_device(
        monkeypatch):
    from fastp2p.bench import micro

    monkeypatch.setattr(micro, "copy_bandwidth_gbps",
                        lambda device: {"cpu": 10.0, "cuda": 1000.0}[device])
    # a CPU case (data loading) in a GPU run, its bandwidth given by the module itself
    row = micro.normalize_row({"name": "decode", "median_ms": 1.0, "bytes": 4e6, "gbps": 5.0,
                               "device": "cpu"}, module="bench_data", number=0,
                              default_device="cuda")
    assert (row["device"], row["gbps"]) == ("cpu", 5.0)
    assert (row["copy_gbps"], row["copy_fraction"]) == (10.0, 0.5)


def test_a_micro_row_timed_at_zero_ms_is_refused():
    from fastp2p.bench.micro import row_problem

    assert row_problem({"name": "x", "median_ms": 0.0}) == (
        "'median_ms' must be a positive finite number, got 0.0")


HEADER_RESULTS = {
    "mode": "full", "complete": True,
    "environment": {"device": "NVIDIA Test GPU", "date_utc": "2026-12-04 10:00",
                    "date": "20261204", "commit": "abc1234", "commit_dirty": True,
                    "python": "3.11.9", "torch": "2.13.0", "triton": "3.9.0"},
    "config": {"network_description": "unet_256", "steps": 50, "warmup": 10},
    "training": [],
}


def test_the_tables_header_says_what_the_figures_were_measured_with():
    from fastp2p.bench.render import markdown

    table = markdown(HEADER_RESULTS)
    assert "commit abc1234 (uncommitted changes)" in table
    assert "Versions: torch 2.13.0, triton 3.9.0, python 3.11.9." in table
    assert "50 timed steps after 10 warm-up per peer." in table  # the protocol's 50
    assert "Quick mode" not in table and "Incomplete run" not in table
    older = {key: value for key, value in HEADER_RESULTS.items() if key != "complete"}
    assert "Incomplete run" not in markdown(older)  # written before runs said so
    quick = markdown({**HEADER_RESULTS, "mode": "quick", "complete": False,
                      "config": {**HEADER_RESULTS["config"], "steps": 3}})
    assert "**Quick mode**" in quick and "**Incomplete run**" in quick
    assert "3 timed steps after 10 warm-up per peer (fewer than the protocol's 50)." in quick


def test_a_results_name_reserved_by_a_write_that_failed_is_given_back(tmp_path, monkeypatch):
    import contextlib

    from fastp2p.bench import results_files

    @contextlib.contextmanager
    def disk_full(path, durable):
        raise OSError(28, "No space left on device")
        yield
    monkeypatch.setattr(results_files, "replacing", disk_full)
    results = {"run_id": "r", "mode": "quick", "device_slug": "cpu",
               "environment": {"date": "20261204", "commit": "abc1234"}}
    with pytest.raises(OSError):
        results_files.write_json(results, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_inference_and_end_to_end_tables_show_the_rows_figures():
    from fastp2p.bench.render import markdown

    inference = {"module": "reference", "device": "cpu", "precision": "fp32",
                 "channels_last": False, "mode": "eval", "batch_size": 1, "status": "ok",
                 "images_per_s": 20.0, "images_per_s_p20": 18.0, "images_per_s_p80": 22.0,
                 "ms": 50.0, "fastp2p_ratio": 4.0, "setup_seconds": 2.5}
    end_to_end = {"batch_size": 2, "processes": 1, "device": "cpu", "precision": "fp32",
                  "status": "ok", "images_per_s": 8.0, "per_rank_images_per_s": [8.0],
                  "step_only_images_per_s": 10.0, "ratio_to_step_only": 0.8,
                  **{f"{stage}_{figure}": value for stage in ("data", "log", "sample",
                                                              "checkpoint")
                     for figure, value in (("share", 0.25), ("s", 0.5), ("calls", 2),
                                           ("ms_per_call", 250.0))}}
    table = markdown({**HEADER_RESULTS, "inference": [inference], "end_to_end": [end_to_end]})
    assert ("| reference | cpu | fp32 | eval | 1 | 20.0 | 18.0–22.0 | 50.000 | 4.00 | 2.5 |"
            in table)
    assert ("| 2 | 1 | cpu | fp32 | 8.0 | – | 10.0 | 80% | 25.0% (250.0 ms × 2) |"
            in table)


def test_quick_and_full_runs_get_their_own_limits_and_the_given_budget():
    from fastp2p.bench.command import settings_from_args
    from helpers.bench_helpers import bench_args, quick_settings

    quick = quick_settings("--time-budget", "30", "--sections", "training")
    assert (quick.job_time_limit, quick.time_budget, quick.inference_rep_ms) == (120.0, 30.0,
                                                                                  100.0)
    full = settings_from_args(bench_args("--device", "cpu", "--sections", "training"))
    assert (full.job_time_limit, full.time_budget, full.inference_rep_ms) == (240.0, None,
                                                                               500.0)


@pytest.fixture
def stop_handlers():
    """stops.stop_signals() in this process, with pytest's own handlers back afterwards."""
    from fastp2p.bench import stops

    with stops.caller_handlers_back(in_process=True):
        yield stops


def test_after_a_stop_the_handlers_stay_to_ignore_the_next_ones(stop_handlers):
    import os

    with pytest.raises(stop_handlers.Stopped):
        with stop_handlers.stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is stop_handlers._handle
    os.kill(os.getpid(), signal.SIGINT)  # ignored: the run is on its way out


def test_a_stop_taken_over_from_the_trainer_makes_later_stops_ignored(stop_handlers):
    import os

    with pytest.raises(stop_handlers.Stopped) as caught:
        with stop_handlers.stop_signals():
            stop = stop_handlers.stop_run(signal.SIGINT, "the trainer saved and returned")
            os.kill(os.getpid(), signal.SIGTERM)  # the run's clean-up must not be cut
            raise stop
    assert str(caught.value) == "the trainer saved and returned"


def test_a_failed_end_to_end_job_is_listed_as_a_failure():
    from fastp2p.bench.command import failed_jobs

    assert failed_jobs({"end_to_end": [{"status": "failed", "batch_size": 2,
                                        "error": "boom"}]}) == [
        "end_to_end (batch_size 2): boom"]


def test_results_names_and_environment_fields(monkeypatch, tmp_path):
    import datetime
    import subprocess

    from fastp2p.bench import environment

    assert environment.file_date(datetime.datetime(2026, 12, 4, 23, 0)) == "20261204"
    monkeypatch.setattr(environment, "device_name", lambda device: "NVIDIA H100 80GB HBM3 ")
    assert environment.device_slug("cuda") == "nvidia-h100-80gb-hbm3"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a").write_text("1")
    subprocess.run([*git, "add", "a"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    full = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    described = environment.describe("cpu", tmp_path)
    # the results files' names carry 8 hex digits of the commit, as benchmarks/results' do
    assert (described["commit"], described["commit_dirty"]) == (full[:8], False)
    assert (described["torch"], described["device_type"]) == (torch.__version__, "cpu")
    (tmp_path / "a").write_text("2")
    assert environment.git_commit(tmp_path) == (full[:8], True)


def test_peer_environment_variables_are_set_on_cuda_only_and_put_back(monkeypatch):
    import os

    from fastp2p.bench.peer_specs import environment, peer_environment

    assert peer_environment(peer_by_name("fastp2p-pdl"), "cpu") == {}
    assert peer_environment(peer_by_name("fastp2p-pdl"), "cuda") == {"FASTP2P_PDL": "1"}
    monkeypatch.setenv("FASTP2P_PDL", "0")
    with environment({"FASTP2P_PDL": "1"}):
        assert os.environ["FASTP2P_PDL"] == "1"
    assert os.environ["FASTP2P_PDL"] == "0"
