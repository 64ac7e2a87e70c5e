"""End-to-end training throughput: ``fastp2p train`` itself, on a packed set, against the step.

Each job writes a synthetic set (``fastp2p.data.synthetic``) of exactly one epoch of
``warmup + steps`` batches per process, packs it (``fastp2p pack``), and runs the train command's
own ``run`` in this process (or, for several processes, in processes set up as torchrun sets
them up: RANK, WORLD_SIZE, MASTER_ADDR; gloo on the CPU, NCCL on GPUs) with the benchmark's
network, precision and, on a GPU, CUDA graphs. Loading, augmentation, logging every
``--log-every`` steps, a sample every ``--display_freq`` images and a checkpoint every
``--save_latest_freq`` images all happen as in a real run; the trainer's StageTimes report
images/s over the steps after the warm-up, and the time the step waited for data, logged,
sampled and checkpointed, each apart. The frequencies are chosen so that each happens inside the
timed window (recorded in the row); the per-call costs are what carry over to other settings.
``finalize_end_to_end_rows`` adds the ratio to the fastp2p peer's step-only images/s at the
same batch size from the training section of the same run.

The training runs at the bench's torch thread count (that of the step-only figure it is
compared with), which is put back afterwards for the jobs that follow. A Ctrl-C (or SIGTERM, or
SIGHUP) that the trainer caught, saved on and exited on stops the whole bench, as it does between
jobs; so does the trainer's second stop request (with the exit code ``fastp2p train`` gives it).
Stop signals after that are ignored (``fastp2p.bench.stops``), so the job's temporary folder is
removed and its processes stopped whatever arrives meanwhile. The trainer's end summary leaves
out the lines that name its files (``train_command.run``'s ``name_files``): they would point into
that folder, removed with the job.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fastp2p.bench.networks import NetworkConfig
from fastp2p.bench.runner import Job
from fastp2p.bench.stops import Stopped, deferred, stop_run
from fastp2p.json_files import read_json
from fastp2p.train.stop_requests import StopRequests

LOAD_RATIO = 286 / 256      # pix2pix's load_size / crop_size
STOP_GRACE_S = 5.0          # how long a rank gets to exit on SIGTERM before it is killed


@dataclass(frozen=True)
class EndToEndSettings:
    config: NetworkConfig
    batch_sizes: tuple
    steps: int
    warmup: int
    device: str
    processes: tuple = (1,)     # process counts (world sizes) to run each batch size at


def load_size(config: NetworkConfig) -> int:
    return round(config.image_size * LOAD_RATIO)


def make_packed_set(root: Path, pairs: int, load: int) -> Path:
    """A synthetic set of ``pairs`` pairs under ``root``, packed at ``load``; returns OUT."""
    from fastp2p.optional_packages import require_packages

    # the train command's own check, here before the set is written: the job's error names
    # the extra to install, not a module deep in the data code
    require_packages(("PIL", "tqdm"), extra="bench",
                     needed_by="fastp2p bench --sections end-to-end")
    from fastp2p.cpu_info import usable_cpus
    from fastp2p.data.pack import pack_phase
    from fastp2p.data.synthetic import write_synthetic

    write_synthetic(root / "synthetic", pairs, workers=usable_cpus(), progress=False)
    pack_phase(root / "synthetic", root / "packed", "train", load_size=load,
               workers=usable_cpus(), progress=False)
    return root / "packed"


@contextlib.contextmanager
def temporary_folder(prefix: str):
    """A new temporary folder (a Path), removed when the block ends, even when a stop signal
    arrives meanwhile (``stops.deferred``): one during the removal left the packed set and the
    checkpoints behind."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        with deferred():
            shutil.rmtree(folder)


def frequencies(steps: int, batch_images: int) -> dict:
    """Log, sample and checkpoint intervals that each fall inside ``steps`` timed steps."""
    return {"log_every": max(1, min(50, steps // 4)),
            "display_freq": max(1, steps // 3) * batch_images,
            "save_latest_freq": max(1, steps // 2) * batch_images}


def train_argv(config: NetworkConfig, batch_size: int, packed: Path, checkpoints: Path,
               device: str, every: dict, world_size: int = 1) -> list:
    cuda = torch.device(device).type == "cuda"
    argv = ["train", "--dataroot", str(packed), "--name", f"e2e-b{batch_size}",
            "--checkpoints_dir", str(checkpoints), "--device", device,
            "--netG", f"unet_{2 ** config.num_downs}", "--netD", "n_layers",
            "--n_layers_D", str(config.n_layers), "--ngf", str(config.ngf),
            "--ndf", str(config.ndf), "--norm", config.norm,
            "--input_nc", str(config.input_nc), "--output_nc", str(config.output_nc),
            "--crop_size", str(config.image_size), "--load_size", str(load_size(config)),
            "--batch_size", str(batch_size), "--n_epochs", "1", "--n_epochs_decay", "0",
            "--save_epoch_freq", "1000000", "--log-every", str(every["log_every"]),
            "--display_freq", str(every["display_freq"]),
            "--save_latest_freq", str(every["save_latest_freq"]),
            "--precision", "bf16" if cuda else "fp32"]
    if not config.use_dropout:
        argv.append("--no_dropout")
    if cuda:        # as the fastp2p peer of the training section runs on a GPU
        argv.append("--channels-last")
        if world_size == 1:     # train's own default: no whole-step graph under DDP
            argv.append("--graphs")
    return argv


def run_train(argv: list, skip_steps: int) -> tuple[int, dict]:
    """``fastp2p train ARGV`` in this process; (exit code, this process's StageTimes figures)."""
    import argparse

    from fastp2p.train import train_command
    from fastp2p.train.stage_times import StageTimes

    # the train subcommand's own parser (bench sits below the cli, so not fastp2p.cli's)
    parser = argparse.ArgumentParser(prog="fastp2p")
    train_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    times = StageTimes(skip_steps=skip_steps)
    try:
        with bench_thread_count():
            code = train_command.run(args, times=times, name_files=False)
    except Stopped:  # the bench's own handler, before or after the training loop
        raise
    except KeyboardInterrupt as request:
        # the trainer's second stop request: its message advises --continue_train from a
        # checkpoint folder that goes with the job's temporary folder; its exit code, where it
        # carries one, is 128 + the signal, else Ctrl-C's
        exit_code = getattr(request, "exit_code", 128 + signal.SIGINT)
        raise stop_run(exit_code - 128, "fastp2p train stopped at once by a second stop "
                       "request, without saving; its checkpoints were in this job's temporary "
                       "folder, removed with it") from None
    stopped_by = next((sig for sig in StopRequests.SIGNALS if code == 128 + sig), None)
    if stopped_by is not None:
        # the trainer caught the user's stop (SIGHUP too, which the bench leaves at its default
        # elsewhere: a hang-up ends the bench either way, not only this job), saved and
        # returned: stop the bench as well; the checkpoint its message names goes with the
        # job's temporary folder
        raise stop_run(stopped_by, f"fastp2p train stopped by {stopped_by.name} (exit code "
                       f"{code}); the checkpoint it saved was in this job's temporary folder, "
                       "removed with it")
    return code, times.summary()


@contextlib.contextmanager
def bench_thread_count():
    """Run the body's ``fastp2p train`` at the bench's torch thread count, and keep it after.

    train chooses its own compute threads (fastp2p.train.cpu_threads) unless OMP_NUM_THREADS or
    MKL_NUM_THREADS is set (its --num_threads sets only the data readers), and sets them for the
    whole process. Setting OMP_NUM_THREADS for the body makes it keep the bench's, the count
    of the step-only figure it is compared with and of the recorded environment; the count (and
    the variable) are put back whatever the body did.
    """
    from fastp2p.bench.peer_specs import environment
    from fastp2p.train.cpu_threads import THREAD_ENV_VARS

    threads = torch.get_num_threads()
    given = any((os.environ.get(name) or "").strip() for name in THREAD_ENV_VARS)
    try:
        with environment({} if given else {"OMP_NUM_THREADS": str(threads)}):
            yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, argv: list, skip: int, out: str,
               threads: int):
    """One process of a multi-process job, set up as torchrun sets one up, with ``threads``
    compute threads (its share of the bench's)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    code, figures = run_train(argv, skip)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"code": code, **figures}))


def run_ranks(rank_main, args: tuple, world_size: int) -> None:
    """``rank_main(rank, *args)`` in ``world_size`` spawned processes, until all have ended.

    However this returns (a rank failed, the job's time limit, Ctrl-C), no rank is left running:
    those still alive get SIGTERM, then SIGKILL after STOP_GRACE_S, and are joined, so none
    runs into the next job or outlives the job's temporary folder.
    """
    import torch.multiprocessing as mp

    context = mp.start_processes(rank_main, args=args, nprocs=world_size, join=False,
                                 start_method="spawn")
    try:
        while not context.join():
            pass
    finally:
        with deferred():
            stop_processes(context.processes)


def stop_processes(processes, grace_s: float = STOP_GRACE_S) -> None:
    """Terminate, then kill after ``grace_s``, and join each of ``processes`` still alive."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()


def run_processes(argv: list, skip: int, world_size: int, work: Path) -> list:
    """Per-rank figures of ``fastp2p train ARGV`` on ``world_size`` processes."""
    if world_size == 1:
        code, figures = run_train(argv, skip)
        ranks = [{"code": code, **figures}]
    else:
        threads = max(1, torch.get_num_threads() // world_size)
        run_ranks(_rank_main, (world_size, _free_port(), argv, skip, str(work), threads),
                  world_size)
        ranks = [read_json(work / f"rank{r}.json") for r in range(world_size)]
    failed = [rank for rank, figures in enumerate(ranks) if figures["code"] != 0]
    if failed:
        raise RuntimeError(f"fastp2p train exited with code {ranks[failed[0]]['code']} on rank "
                           f"{failed[0]}")
    if any("images_per_s" not in figures for figures in ranks):
        raise RuntimeError("no steps after the warm-up were timed")
    return ranks


def end_to_end_job(batch_size: int, world_size: int, settings: EndToEndSettings) -> Job:
    device = settings.device
    identity = {"batch_size": batch_size, "processes": world_size,
                "device": torch.device(device).type,
                "precision": "bf16" if torch.device(device).type == "cuda" else "fp32"}

    def run():
        skip = max(1, settings.warmup)
        steps = skip + settings.steps
        every = frequencies(settings.steps, batch_size * world_size)
        with temporary_folder("fastp2p-bench-e2e-") as work:
            packed = make_packed_set(work, steps * batch_size * world_size,
                                     load_size(settings.config))
            argv = train_argv(settings.config, batch_size, packed, work / "checkpoints", device,
                              every, world_size)
            ranks = run_processes(argv, skip, world_size, work)
        total = sum(rank["images_per_s"] for rank in ranks)
        main = ranks[0]
        row = {"steps": main["window_steps"], "warmup": skip, **every,
               "images_per_s": total,
               "per_rank_images_per_s": [rank["images_per_s"] for rank in ranks],
               "window_s": main["window_s"]}
        for stage in ("data", "step", "log", "sample", "checkpoint"):
            calls = main[f"{stage}_calls"]
            row[f"{stage}_s"] = main[f"{stage}_s"]
            row[f"{stage}_share"] = main[f"{stage}_share"]
            row[f"{stage}_calls"] = calls
            row[f"{stage}_ms_per_call"] = 1e3 * main[f"{stage}_s"] / calls if calls else None
        return [row]

    label = f"batch {batch_size}" + (f" x {world_size} processes" if world_size > 1 else "")
    return Job("end-to-end", label, run, identity)


def end_to_end_jobs(settings: EndToEndSettings) -> list:
    return [end_to_end_job(batch, processes, settings)
            for processes in settings.processes for batch in settings.batch_sizes]


def finalize_end_to_end_rows(rows, training_rows) -> list:
    """Add the step-only images/s (the training section's fastp2p row, same batch size per
    process) and the end-to-end share of it."""
    step_only = {row["batch_size"]: row["images_per_s"] for row in training_rows
                 if row.get("peer") == "fastp2p" and row.get("status") == "ok"}
    for row in rows:
        reference = step_only.get(row["batch_size"])
        ok = row.get("status") == "ok" and reference is not None
        row["step_only_images_per_s"] = reference
        # a process's images/s against the step alone on one device
        per_process = row["images_per_s"] / row["processes"] if ok else None
        row["ratio_to_step_only"] = per_process / reference if ok else None
    return rows
