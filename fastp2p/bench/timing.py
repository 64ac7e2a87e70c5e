"""Timing: medians with p20/p80, device events on CUDA, a wall clock on the CPU, time limits.

``benchmark`` follows ``triton.testing.do_bench``: warm-up and repetition budgets in milliseconds,
the L2 cache flushed before every timed call on CUDA, each call timed by its own pair of events,
and the median with the 20th and 80th percentiles reported. It is written here (not a call to
triton's) so the same helper runs on a CPU and on a machine whose triton differs from the pin.
``time_steps`` times a training step as it runs in a loop (no flush, no gaps between steps).
"""
import contextlib
import decimal
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass

import torch

L2_FLUSH_BYTES = 256 * 1024 * 1024  # larger than any current GPU's L2 (H100: 50 MB)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median and the 20th/80th percentiles over ``count`` timed calls."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    count: int

    def as_dict(self) -> dict:
        return asdict(self)

    def throughput(self, items_per_call: int, name: str = "images_per_s") -> dict:
        """``name`` at the median, and its p20/p80: the faster calls (p20 of time) give the
        higher rate (p80 of throughput)."""
        return {name: items_per_call * 1e3 / self.median_ms,
                f"{name}_p20": items_per_call * 1e3 / self.p80_ms,
                f"{name}_p80": items_per_call * 1e3 / self.p20_ms}


def quantile(values, q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) of a non-empty sequence."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(times_ms) -> Timing:
    times_ms = list(times_ms)
    return Timing(quantile(times_ms, 0.5), quantile(times_ms, 0.2), quantile(times_ms, 0.8),
                  len(times_ms))


def _is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def benchmark(fn, *, device="cuda", warmup_ms: float = 25.0, rep_ms: float = 100.0,
              min_reps: int = 10, max_reps: int = 10_000, flush_l2: bool = True) -> Timing:
    """Time ``fn()`` with ``triton.testing.do_bench`` semantics; returns a :class:`Timing`.

    The call count comes from a first estimate so that warm-up lasts about ``warmup_ms`` and the
    timed calls about ``rep_ms`` (at least ``min_reps``). On CUDA the L2 cache is overwritten
    before every timed call (set ``flush_l2=False`` to time a warm cache).
    """
    if warmup_ms < 0 or rep_ms <= 0:
        raise ValueError(f"warmup_ms must be >= 0 and rep_ms > 0, got {warmup_ms}, {rep_ms}")
    cuda = _is_cuda(device)
    flush_buffer = (torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
                    if cuda and flush_l2 else None)

    def flush():
        if flush_buffer is not None:
            flush_buffer.zero_()

    fn()  # first call: compilation, handle creation, allocator growth
    estimate_ms = _mean_ms(fn, device, calls=5)
    n_warmup = max(1, int(warmup_ms / max(estimate_ms, 1e-6)))
    n_rep = min(max_reps, max(min_reps, int(rep_ms / max(estimate_ms, 1e-6))))
    for _ in range(n_warmup):
        fn()
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
        for start, end in zip(starts, ends):
            flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return summarize(start.elapsed_time(end) for start, end in zip(starts, ends))
    times = []
    for _ in range(n_rep):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1e3)
    return summarize(times)


def _mean_ms(fn, device, calls: int) -> float:
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / calls
    begin = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - begin) * 1e3 / calls


def time_steps(step, *, device, warmup: int, steps: int) -> Timing:
    """Run ``step()`` ``warmup`` times, then time ``steps`` consecutive calls one by one.

    On CUDA one event sits between consecutive steps (step i spans events i and i+1), so launch
    gaps count against the step that causes them and nothing syncs the host until the end.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, "
                         f"warmup={warmup}")
    for _ in range(warmup):
        step()
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for i in range(steps):
            step()
            events[i + 1].record()
        torch.cuda.synchronize(device)
        return summarize(events[i].elapsed_time(events[i + 1]) for i in range(steps))
    times = []
    for _ in range(steps):
        begin = time.perf_counter()
        step()
        times.append((time.perf_counter() - begin) * 1e3)
    return summarize(times)


def format_seconds(seconds: float) -> str:
    """A number of seconds given (a time limit) as it was given: its shortest decimal, without
    an exponent: 0.125 reads "0.125" (not "0.12"), 1e-5 "0.00001", 240.0 "240"."""
    text = format(decimal.Decimal(repr(float(seconds))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_elapsed(seconds: float) -> str:
    """A number of seconds measured: whole from 10 s up, two significant digits below (0.3 s
    reads "0.3", not "0")."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"


class TimeLimitExceeded(Exception):
    """A benchmark job ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`TimeLimitExceeded` in the body after ``seconds`` of wall time.

    Uses SIGALRM, so it interrupts Python code (a torch.compile or autotuning loop) as soon as
    control returns to the interpreter; a single long C call finishes first. Without SIGALRM
    (Windows, or outside the main thread) or with ``seconds`` None it imposes no limit.
    """
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    if seconds <= 0:
        raise TimeLimitExceeded("no time left")

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"time limit of {format_seconds(seconds)} s exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """Set ``torch.backends.cudnn.benchmark`` for the body and restore it after."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
