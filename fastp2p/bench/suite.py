"""One benchmark run: ceilings, FLOP model, then every job, into one results dict."""
import uuid
from dataclasses import dataclass

import torch

from fastp2p.bench import ceilings, environment
from fastp2p.bench.defaults import SECTIONS, inference_compile_modes
from fastp2p.bench.end_to_end import (EndToEndSettings, end_to_end_jobs,
                                      finalize_end_to_end_rows)
from fastp2p.bench.flops import training_step_flops
from fastp2p.bench.inference import (finalize_inference_rows, inference_jobs,
                                     omitted_compile_modes)
from fastp2p.bench.machine_load import busy_notes, machine_load
from fastp2p.bench.micro import micro_jobs
from fastp2p.bench.networks import NetworkConfig
from fastp2p.bench.peer_specs import PEER_NAMES
from fastp2p.bench.runner import Log, Runner, short_error
from fastp2p.bench.training import TrainingSettings, finalize_training_rows, training_jobs

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SuiteSettings:
    quick: bool
    device: str
    sections: tuple
    config: NetworkConfig
    batch_sizes: tuple
    steps: int
    warmup: int
    peers: tuple                 # PeerSpec
    job_time_limit: float | None
    time_budget: float | None
    benchmarks_dir: object       # Path or None
    inference_rep_ms: float
    micro_modules: tuple = None  # bench_*.py stems to run; None: all
    processes: tuple = (1,)      # end-to-end section: process counts (world sizes)
    option_notes: tuple = ()     # options given for sections the run leaves out, default
                                 # peers it leaves out


def measure_ceilings(device: str, log) -> dict:
    out = {}
    for name, measure in (("copy", ceilings.copy_bandwidth), ("matmul", ceilings.matmul_rate)):
        try:
            out[name] = measure(device)
        except Exception as error:  # noqa: BLE001 - a missing ceiling leaves MFU empty
            out[name] = None
            out[f"{name}_error"] = short_error(error)
    copy, matmul = out.get("copy"), out.get("matmul")
    log("ceilings: " + ", ".join(filter(None, [
        f"copy {copy['gbps']:.1f} GB/s" if copy else f"copy failed: {out.get('copy_error')}",
        f"{matmul['dtype']} matmul {matmul['tflops']:.2f} TFLOP/s" if matmul
        else f"matmul failed: {out.get('matmul_error')}"])))
    return out


def plan_jobs(settings: SuiteSettings) -> tuple[list, list]:
    """(the jobs in running order, notes): a note for each thing asked for that will not run
    (an option for a section left out, a compile variant left out, a micro section with no
    module), so that none goes missing silently. The other sections always have jobs: their
    options are checked to be non-empty."""
    notes = list(settings.option_notes)
    training_settings = TrainingSettings(settings.config, settings.batch_sizes, settings.steps,
                                         settings.warmup, settings.device)
    first, compiled = (training_jobs(settings.peers, training_settings)
                       if "training" in settings.sections else ([], []))
    jobs, inference_compiled = list(first), []
    if "end-to-end" in settings.sections:
        jobs += end_to_end_jobs(EndToEndSettings(settings.config, settings.batch_sizes,
                                                 settings.steps, settings.warmup,
                                                 settings.device, settings.processes))
    if "inference" in settings.sections:
        # torch.compile of the reference module runs when its training peer is in --peers.
        compile_modes = inference_compile_modes(settings.peers)
        inference, inference_compiled = inference_jobs(
            settings.device, settings.config, quick=settings.quick,
            rep_ms=settings.inference_rep_ms, compile_modes=compile_modes)
        jobs += inference
        omitted = omitted_compile_modes(torch.device(settings.device).type, compile_modes,
                                        settings.quick)
        notes += [f"inference: torch.compile of the reference, mode {mode}, not run: {why}"
                  for mode, why in omitted.items()]
    if "micro" in settings.sections:
        micro = micro_jobs(settings.benchmarks_dir, quick=settings.quick,
                           device=settings.device, only=settings.micro_modules)
        jobs += micro
        if not micro:
            notes.append(f"micro: nothing to run ({_why_no_micro(settings.benchmarks_dir)})")
    # Every compiled training peer, max-autotune too, before the reference's compiled
    # inference: they are the figures a short GPU window is for (issue 18), and the budget cuts
    # from the end.
    jobs += compiled + inference_compiled
    return jobs, notes


def _why_no_micro(benchmarks_dir) -> str:
    if benchmarks_dir is None:
        return ("no benchmarks/ folder: fastp2p is not imported from a source checkout; pass "
                "--benchmarks-dir")
    return f"no bench_*.py modules in {benchmarks_dir}"


def run_suite(settings: SuiteSettings, log=None, on_progress=None) -> dict:
    """Run every job; ``on_progress(results)`` gets the results so far after each job (so a
    run killed from outside still leaves its figures on disk)."""
    log = log or Log()
    device = settings.device
    checkout = environment.package_checkout()  # the code that runs, not the cwd's
    env = environment.describe(device, checkout)
    log(f"fastp2p bench ({'quick' if settings.quick else 'full'}) on {env['device']}, "
        f"torch {env['torch']}, commit {env['commit']}")
    runner = Runner(job_time_limit=settings.job_time_limit, time_budget=settings.time_budget,
                    log=log)
    measured = measure_ceilings(device, log)
    flop_model = training_step_flops(settings.config)
    jobs, notes = plan_jobs(settings)
    for note in notes:
        log.note(note)

    rows = {section: [] for section in SECTIONS}
    fixed = {
        "schema": SCHEMA_VERSION,
        # which run wrote a results file: its progress writes replace its own file only
        # (results_files.results_path), never an earlier run's of the same day and commit
        "run_id": uuid.uuid4().hex,
        "mode": "quick" if settings.quick else "full",
        "device_slug": environment.device_slug(device),
        "environment": env,
        "config": {
            "device": device, "sections": list(settings.sections),
            "batch_sizes": list(settings.batch_sizes), "steps": settings.steps,
            "warmup": settings.warmup, "peers": [peer.name for peer in settings.peers],
            "processes": list(settings.processes),
            "job_time_limit_s": settings.job_time_limit, "time_budget_s": settings.time_budget,
            "network": settings.config.as_dict(),
            "network_description": settings.config.describe(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
        "peers": {peer.name: peer.description for peer in settings.peers},
        "notes": notes,
        "ceilings": measured,
        "flop_model": flop_model,
    }
    matmul = measured.get("matmul")

    def assemble(complete: bool) -> dict:
        load_at_end = machine_load()  # after the last job so far: the start's alone can mislead
        training = finalize_training_rows(
            [dict(row) for row in rows["training"]], peer_order=PEER_NAMES,
            gflop_per_image=flop_model["train_step_gflop_per_image"],
            matmul_tflops=matmul["tflops"] if matmul else None)
        busy = bool(busy_notes({"environment": env, "load_at_end": load_at_end}))
        return {**fixed, "complete": complete, "load_at_end": load_at_end, "busy": busy,
                "training": training,
                "inference": finalize_inference_rows([dict(r) for r in rows["inference"]]),
                "micro": list(rows["micro"]),
                "end_to_end": finalize_end_to_end_rows([dict(r) for r in rows["end-to-end"]],
                                                       training),
                "wall_seconds": round(log.elapsed(), 1)}

    for job in jobs:
        rows[job.section] += runner.run(job)
        if on_progress is not None:
            on_progress(assemble(complete=False))
    return assemble(complete=True)
