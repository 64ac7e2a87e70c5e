"""Runs benchmark jobs one by one: a time limit each, a budget for all, failures as rows.

A job that raises (a compile error, out of memory, a missing module), calls ``sys.exit`` (a
micro-benchmark module whose argparse reads the bench's own command line at import), raises
another BaseException (``pytest.importorskip`` at a module's import) or runs past its limit
becomes a row with ``status: "failed"`` and the error; only a stop (Ctrl-C, a stop signal)
ends the run. A job that would start after the budget is spent, or that the end of the budget
cut short (before its own limit), becomes ``status: "skipped"``: the budget, not the job,
decided that it has no figures. Memory is freed between jobs so one peer's caches and graphs
never count against the next one's peak.
"""
import gc
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from fastp2p.bench.stops import raise_if_stopped
from fastp2p.bench.timing import TimeLimitExceeded, format_elapsed, time_limit

ERROR_CHARS = 600


@dataclass
class Job:
    section: str                      # "training" | "inference" | "micro" | "end-to-end"
    label: str                        # for the progress log
    run: Callable[[], list]           # returns the job's result rows (dicts)
    identity: dict = field(default_factory=dict)  # fields every row of this job carries


class Log:
    """Progress lines with the UTC time and the seconds since the run began."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        print(f"[{stamp} +{self.elapsed():6.1f}s] {message}", file=self.stream, flush=True)

    def note(self, message: str) -> None:
        """Something asked for that the run will not do: on stderr, where it is not lost among
        the progress lines (the report repeats it)."""
        print(f"fastp2p bench: note: {message}", file=sys.stderr, flush=True)


def short_error(error: BaseException) -> str:
    if isinstance(error, SystemExit):  # its text is the bare exit code
        text = f"SystemExit: the job called sys.exit({error.code!r})"
    else:
        text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " ..."


def free_device_memory() -> None:
    """Drop compiled code, CUDA-graph pools and cached blocks left by the previous job."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        except RuntimeError:
            pass  # a broken context shows up as the next job's own failure


class Runner:
    def __init__(self, *, job_time_limit=None, time_budget=None, log=None):
        self.job_time_limit = job_time_limit
        self.deadline = None if time_budget is None else time.monotonic() + time_budget
        self.log = log or Log()

    def remaining(self):
        return None if self.deadline is None else self.deadline - time.monotonic()

    def run(self, job: Job) -> list:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            self.log(f"{job.section}: {job.label}: skipped (time budget spent)")
            return [{**job.identity, "status": "skipped",
                     "error": "not run: the run's --time-budget was spent"}]
        limit = self.job_time_limit
        # the rest of the budget, not --peer-time-limit, is what may stop this job
        budget_bound = remaining is not None and (limit is None or remaining < limit)
        if budget_bound:
            limit = remaining
        self.log(f"{job.section}: {job.label} ...")
        began = time.monotonic()
        try:
            with time_limit(limit):
                rows = job.run()
            rows = [{**job.identity, "status": "ok", **row} for row in rows]
        except TimeLimitExceeded as error:
            rows = [{**job.identity, "status": "skipped",
                     "error": f"cut by --time-budget after "
                              f"{format_elapsed(time.monotonic() - began)} s"}
                    if budget_bound else failed_row(job, error)]
            del error
        except KeyboardInterrupt:  # Ctrl-C or a stop signal: the run's to handle, not the job's
            raise
        # BaseException: a module's sys.exit, or pytest.importorskip at its import (Skipped
        # is no Exception), must not end the run
        except BaseException as error:  # noqa: BLE001 - every failure is a row
            rows = [failed_row(job, error)]
            del error
        raise_if_stopped()  # a stop the job swallowed (except BaseException) still ends the run
        seconds = time.monotonic() - began
        free_device_memory()
        for row in rows:
            row.setdefault("wall_seconds", round(seconds, 2))
        self.log(f"{job.section}: {job.label}: {describe_outcome(rows)} ({seconds:.1f} s)")
        return rows


def failed_row(job: Job, error: BaseException) -> dict:
    """The row of a job that raised ``error`` (call it in the ``except`` clause)."""
    return {**job.identity, "status": "failed", "error": short_error(error),
            "traceback": traceback.format_exc(limit=-8)}


def describe_outcome(rows) -> str:
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        return f"{failed[0]['status']}: {failed[0].get('error', '')}"
    if len(rows) == 1 and "images_per_s" in rows[0]:
        return f"{rows[0]['images_per_s']:.1f} images/s"
    return f"{len(rows)} row(s)"
