"""The benchmark harness's parts: statistics, FLOP model, time limits, failures as rows,
micro-module discovery, and the report made from saved rows. CPU, a few seconds."""
import copy
import json
import time

import pytest
import torch

from fastp2p.bench import micro, render, results_files
from fastp2p.bench.flops import layer_forward_flops, training_step_flops
from fastp2p.bench.networks import (FULL_CONFIG, QUICK_CONFIG, NetworkConfig,
                                    build_discriminator, build_pair, make_batch)
from fastp2p.bench.peers import TrainStep
from fastp2p.bench.runner import Job, Runner
from fastp2p.bench.timing import TimeLimitExceeded, benchmark, quantile, summarize, time_limit
from fastp2p.reference import GANLoss
from helpers.train_helpers import reference_step


def test_quantiles_interpolate_like_numpy():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.2) == pytest.approx(1.8)
    assert quantile(values, 0.8) == pytest.approx(4.2)
    timing = summarize(values)
    assert (timing.median_ms, timing.count) == (3.0, 5)
    with pytest.raises(ValueError, match="empty"):
        quantile([], 0.5)


def test_cpu_benchmark_times_the_call():
    timing = benchmark(lambda: time.sleep(0.002), device="cpu", warmup_ms=1, rep_ms=20)
    assert 1.5 < timing.median_ms < 50
    assert timing.p20_ms <= timing.median_ms <= timing.p80_ms and timing.count >= 10


def test_flop_model_matches_the_design_estimate():
    flops = training_step_flops(FULL_CONFIG)
    assert flops["generator_forward_gflop"] == pytest.approx(12.1, rel=0.01)
    assert flops["discriminator_forward_gflop"] == pytest.approx(6.4, rel=0.01)
    assert flops["train_step_gflop_per_image"] == pytest.approx(87.0, rel=0.01)
    # the count comes from the layer shapes: D's first conv (6 -> 64, 4x4, 128x128 outputs)
    first = layer_forward_flops(build_discriminator(FULL_CONFIG, fast=False),
                                torch.randn(1, 6, 256, 256))[0]
    assert first == 2 * 128 * 128 * 64 * 6 * 16
    # a quarter of the pixels, about a quarter of the FLOPs (the 1-stride layers' borders differ)
    half = NetworkConfig(image_size=128, num_downs=7)
    assert training_step_flops(half)["discriminator_forward_gflop"] == pytest.approx(
        flops["discriminator_forward_gflop"] / 4, rel=0.06)


def test_time_limit_interrupts_python_code():
    began = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        with time_limit(0.2):
            while True:
                time.sleep(0.01)
    assert time.monotonic() - began < 2


def test_runner_reports_failures_and_spent_budget_as_rows():
    runner = Runner(job_time_limit=5)
    ok = runner.run(Job("training", "fine", lambda: [{"images_per_s": 2.0}], {"peer": "a"}))
    assert ok[0]["status"] == "ok" and ok[0]["peer"] == "a"

    def out_of_memory():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    failed = runner.run(Job("training", "oom", out_of_memory, {"peer": "b"}))
    assert failed[0]["status"] == "failed" and "out of memory" in failed[0]["error"]
    assert "RuntimeError" in failed[0]["traceback"]
    slow = Runner(job_time_limit=0.2).run(Job("training", "slow", lambda: time.sleep(5), {}))
    assert slow[0]["status"] == "failed" and "time limit" in slow[0]["error"]
    spent = Runner(time_budget=-1).run(Job("training", "late", lambda: [{}], {"peer": "c"}))
    assert spent[0]["status"] == "skipped" and spent[0]["peer"] == "c"


def test_train_step_is_the_reference_pix2pix_step():
    """The step every PyTorch peer times is pix2pix's optimize_parameters: two steps from the
    same networks give the written-out reference step's weights and running statistics, bit
    for bit (a D loss without its 0.5, or D trained on the fake pair's graph, would not)."""
    torch.manual_seed(0)
    config = NetworkConfig(image_size=32, num_downs=5, ngf=4, ndf=4)
    generator, discriminator = build_pair(config, fast=False, device="cpu")
    ref_g, ref_d = copy.deepcopy(generator), copy.deepcopy(discriminator)
    before_g = [p.detach().clone() for p in generator.parameters()]
    step = TrainStep(generator, discriminator, device="cpu", precision="fp32", fused_adam=False)
    adam = {"lr": 2e-4, "betas": (0.5, 0.999)}
    ref_opt_g, ref_opt_d = (torch.optim.Adam(net.parameters(), **adam) for net in (ref_g, ref_d))
    for seed in (1, 2):
        real_a, real_b = make_batch(config, 2, "cpu", seed=seed)
        step(real_a, real_b)
        reference_step(ref_g, ref_d, ref_opt_g, ref_opt_d, GANLoss("vanilla"), real_a, real_b)
    for ours, theirs in ((generator, ref_g), (discriminator, ref_d)):
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name
    assert all(not torch.equal(a, p) for a, p in zip(before_g, generator.parameters()))
    # D is frozen for the G update, as in the reference implementation
    assert not any(p.requires_grad for p in discriminator.parameters())


def test_same_seed_same_weights_for_reference_and_fastp2p_networks():
    ref_g, ref_d = build_pair(QUICK_CONFIG, fast=False, device="cpu")
    fast_g, fast_d = build_pair(QUICK_CONFIG, fast=True, device="cpu")
    for ref, fast in ((ref_g, fast_g), (ref_d, fast_d)):
        for (name, a), (_, b) in zip(ref.state_dict().items(), fast.state_dict().items()):
            assert torch.equal(a, b), name


def _write_modules(folder):
    folder.mkdir()
    (folder / "bench_good.py").write_text(
        "def collect(quick):\n"
        "    assert quick is True\n"
        "    return [{'name': 'norm_act_fwd', 'median_ms': 2.0, 'bytes': 4e9, 'dtype': 'bf16'},\n"
        "            {'name': 'copy', 'median_ms': 1.0, 'gbps': 500.0}]\n")
    (folder / "bench_broken.py").write_text("import no_such_module_anywhere\n")
    (folder / "bench_bad_rows.py").write_text(
        "def collect(quick):\n    return [{'name': 'x', 'median_ms': float('nan')}]\n")
    (folder / "bench_pytest_only.py").write_text("def test_nothing(benchmark):\n    pass\n")
    (folder / "helpers.py").write_text("raise RuntimeError('not a bench module')\n")


def test_micro_modules_are_discovered_run_and_failures_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(micro, "copy_bandwidth_gbps", lambda device: 1000.0)
    folder = tmp_path / "fake_benchmarks_discovery"
    _write_modules(folder)
    assert [p.name for p in micro.discover(folder)] == [
        "bench_bad_rows.py", "bench_broken.py", "bench_good.py", "bench_pytest_only.py"]
    runner = Runner(job_time_limit=30)
    rows = {}
    for job in micro.micro_jobs(folder, quick=True, device="cpu"):
        rows[job.identity["module"]] = runner.run(job)
    good = rows["bench_good"]
    assert [r["status"] for r in good] == ["ok", "ok"]
    assert good[0]["gbps"] == pytest.approx(2000.0) and good[0]["copy_fraction"] == 2.0
    assert good[1]["copy_fraction"] == pytest.approx(0.5) and good[0]["device"] == "cpu"
    assert rows["bench_broken"][0]["status"] == "failed"
    assert "no_such_module_anywhere" in rows["bench_broken"][0]["error"]
    assert rows["bench_bad_rows"][0]["status"] == "failed"
    assert "median_ms" in rows["bench_bad_rows"][0]["error"]
    assert rows["bench_pytest_only"][0]["status"] == "skipped"


def _synthetic_results():
    env = {"device": "NVIDIA Test GPU", "date": "20261122", "date_utc": "2026-11-22 04:00:00",
           "commit": "abcd1234", "commit_dirty": False, "torch": "2.13.0", "triton": "3.9.0",
           "cuda": "13.0", "cudnn": 91000, "driver": "580", "python": "3.12"}
    ok = {"status": "ok", "images_per_s": 100.0, "images_per_s_p20": 90.0,
          "images_per_s_p80": 110.0, "step_ms": 10.0, "peak_memory_bytes": 2 ** 30,
          "mfu": 0.25, "fastp2p_ratio": 2.0}
    return {
        "schema": 1, "mode": "full", "device_slug": "nvidia-test-gpu", "environment": env,
        "config": {"network_description": "256x256 pix2pix", "steps": 50, "warmup": 10},
        "peers": {"reference": "eager fp32", "fastp2p": "engine"},
        "ceilings": {"matmul": {"tflops": 790.0, "dtype": "bfloat16", "size": 8192},
                     "copy": {"gbps": 3000.0}},
        "flop_model": {"train_step_gflop_per_image": 86.95, "generator_forward_gflop": 12.1,
                       "discriminator_forward_gflop": 6.39,
                       "design_estimate_gflop_per_image": 87.0},
        "training": [{"peer": "reference", "precision": "fp32", "channels_last": False,
                      "batch_size": 1, **ok},
                     {"peer": "fastp2p", "batch_size": 1, "status": "failed",
                      "error": "ModuleNotFoundError: No module named 'fastp2p.train'"}],
        "inference": [{"module": "reference", "device": "cuda", "precision": "bf16",
                       "channels_last": True, "batch_size": 64, "status": "ok", "ms": 5.0,
                       "images_per_s": 12800.0, "images_per_s_p20": 12000.0,
                       "images_per_s_p80": 13000.0, "fastp2p_ratio": None}],
        "micro": [{"module": "bench_norm_act", "status": "ok", "name": "norm_act_fwd",
                   "median_ms": 0.5, "p20_ms": 0.45, "p80_ms": 0.55, "gbps": 2400.0,
                   "copy_fraction": 0.8}],
    }


def test_results_are_saved_and_replotted_from_the_saved_rows(tmp_path):
    saved = results_files.write_json(_synthetic_results(), tmp_path)
    files = {"json": saved, **render.render_files(saved)}
    assert files["json"].name == "nvidia-test-gpu-20261122-abcd1234.json"
    table = files["markdown"].read_text()
    assert ("| reference | fp32 | 1 | 100.0 | 90.0–110.0 | 10.00 | 1,024 | 25.0% | 2.00× | – |"
            in table)
    assert "failed: ModuleNotFoundError" in table and "80%" in table
    assert files["chart"].stat().st_size > 1000
    files["chart"].unlink()
    files["markdown"].unlink()
    again = render.render_files(files["json"])
    assert again["chart"].exists() and again["markdown"].read_text() == table
    assert json.loads(files["json"].read_text())["training"][1]["status"] == "failed"


def test_load_results_rejects_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a fastp2p bench results file"):
        results_files.load_results(other)
    with pytest.raises(ValueError, match="not found"):
        results_files.load_results(tmp_path / "missing.json")


def test_train_step_runs_with_compiled_networks():
    # dynamo's tracing (backend "eager": no inductor build) of the step the compile peers run,
    # with D frozen and unfrozen each step
    config = NetworkConfig(image_size=32, num_downs=5, ngf=4, ndf=4)
    generator, discriminator = build_pair(config, fast=False, device="cpu")
    step = TrainStep(generator, discriminator, device="cpu", precision="fp32", fused_adam=False,
                     run_g=torch.compile(generator, backend="eager"),
                     run_d=torch.compile(discriminator, backend="eager"))
    before = [p.detach().clone() for p in generator.parameters()]
    real_a, real_b = make_batch(config, 2, "cpu")
    for _ in range(2):
        step(real_a, real_b)
    assert all(not torch.equal(a, p) for a, p in zip(before, generator.parameters()))
    torch._dynamo.reset()


def test_fastp2p_peer_drives_the_engine_interface(monkeypatch):
    # A stand-in with the interface fastp2p.train.engine provides (Pix2PixEngine's constructor
    # and step), so the peer's wiring is checked without the real engine.
    import sys
    import types

    from fastp2p.bench.peer_specs import peer_by_name
    from fastp2p.bench.training import TrainingSettings, finalize_training_rows, training_job

    calls = {}

    class Pix2PixEngine:
        def __init__(self, netG, netD, *, gan_mode="vanilla", lambda_L1=100.0, lr=2e-4,
                     beta1=0.5, precision="fp32", channels_last=False, cuda_graph=False):
            calls["init"] = dict(gan_mode=gan_mode, lambda_L1=lambda_L1, lr=lr, beta1=beta1,
                                 precision=precision, channels_last=channels_last,
                                 cuda_graph=cuda_graph, G=type(netG).__name__,
                                 D=type(netD).__name__)
            self.step_impl = TrainStep(netG, netD, device="cpu", precision=precision,
                                       fused_adam=False)
            calls["steps"] = 0

        def step(self, real_A, real_B):
            calls["steps"] += 1
            self.step_impl(real_A, real_B)

    package = types.ModuleType("fastp2p.train")
    engine = types.ModuleType("fastp2p.train.engine")
    engine.Pix2PixEngine = Pix2PixEngine
    package.engine = engine
    monkeypatch.setitem(sys.modules, "fastp2p.train", package)
    monkeypatch.setitem(sys.modules, "fastp2p.train.engine", engine)

    config = NetworkConfig(image_size=32, num_downs=5, ngf=4, ndf=4)
    settings = TrainingSettings(config, (2,), steps=2, warmup=1, device="cpu")
    runner = Runner(job_time_limit=60)
    rows = runner.run(training_job(peer_by_name("fastp2p"), 2, settings))
    rows += runner.run(training_job(peer_by_name("reference"), 2, settings))
    assert [row["status"] for row in rows] == ["ok", "ok"], rows
    assert calls["init"] == dict(gan_mode="vanilla", lambda_L1=100.0, lr=2e-4, beta1=0.5,
                                 precision="fp32", channels_last=False, cuda_graph=False,
                                 G="UNet", D="PatchDiscriminator")
    assert calls["steps"] == 3  # warm-up + timed
    rows = finalize_training_rows(rows, peer_order=("reference", "fastp2p"),
                                  gflop_per_image=1.0, matmul_tflops=1.0)
    assert [row["peer"] for row in rows] == ["reference", "fastp2p"]
    assert rows[0]["fastp2p_ratio"] == pytest.approx(
        rows[1]["images_per_s"] / rows[0]["images_per_s"])
    assert rows[1]["fastp2p_ratio"] == pytest.approx(1.0)


def test_graph_replay_keeps_what_the_graph_points_at_alive():
    import gc
    import weakref

    from fastp2p.nn.cuda_graphs import GraphReplay

    class Recorder:
        replays = 0

        def replay(self):
            self.replays += 1

    class Owner:  # stands for the step (networks, optimizer state) and the static inputs
        pass

    owner, graph = Owner(), Recorder()
    alive = weakref.ref(owner)
    replay = GraphReplay(graph, owner)
    del owner
    gc.collect()
    replay()
    assert alive() is not None and graph.replays == 1


def test_micro_modules_can_be_picked_by_name(tmp_path):
    folder = tmp_path / "fake_benchmarks_pick"
    _write_modules(folder)
    jobs = micro.micro_jobs(folder, quick=True, device="cpu", only=("bench_good", "bench_broken"))
    assert [job.identity["module"] for job in jobs] == ["bench_good", "bench_broken"]
    with pytest.raises(ValueError, match="no bench_nothing in .*bench_bad_rows, bench_broken"):
        micro.micro_jobs(folder, quick=True, device="cpu", only=("bench_nothing",))
