"""Telling OpenBLAS's own SIGINT from a Ctrl-C, and the one line that says it.

OpenBLAS (numpy's) starts a thread per core as numpy loads it. Where one cannot start (the
limit on processes and threads, a container's pids limit or `ulimit -u`, below the cores; or a
memory limit, `ulimit -v` or `-d`, just too low for the threads' stacks) it prints why and
raises SIGINT in this process itself: the commands said "stopped (Ctrl-C)",
exit code 130, though nobody pressed it; and a process that went on would wait forever in a
BLAS call for the thread that never started. ``import_numpy`` loads numpy with SIGINT blocked,
then reads who sent the SIGINT held meanwhile (its siginfo's pid): this process (OpenBLAS's
raise) is ``BlasThreadsNotStarted``; another (a terminal's Ctrl-C, from the kernel: pid 0; a
`kill`; torchrun or srun passing one on) is raised again, a Ctrl-C as ever. How it was sent
(its si_code) does not tell a raise from this process's own kill(): Linux 6.18 gives SI_USER
to both; nothing in fastp2p sends itself SIGINT. Nothing heavy is imported here but numpy,
when asked.

Called where a command's work starts (``fastp2p.cli``), since every command loads numpy: pack
in its work, the others with torch (``stops_deferred.import_torch``, whose deferred SIGINT was
raised again once torch was loaded). A process that loads numpy another way (a spawned loader
worker, a bench process) does not tell it."""
import importlib
import os
import signal

from fastp2p.process_limit import raise_process_limit_advice


class BlasThreadsNotStarted(Exception):
    """OpenBLAS could not start its threads as numpy loaded it (``import_numpy``); the message
    says which limits to raise: on processes and threads, and this process's memory limit
    where one is set (OpenBLAS's EAGAIN is the same for both). ``fastp2p.cli.main`` says it in
    one line, exit code 1."""

    def __init__(self):
        super().__init__(
            "OpenBLAS (numpy's) could not start its threads, one per core: "
            f"{raise_process_limit_advice()}, or set OPENBLAS_NUM_THREADS to fewer threads (1: "
            "none of its own), then run it again")


def import_numpy() -> None:
    """Import numpy, and with it OpenBLAS, which starts its threads: ``BlasThreadsNotStarted``
    where it could not, its SIGINT taken; a SIGINT from another process meanwhile is raised
    again once numpy is loaded. Where the siginfo cannot be read (no ``sigtimedwait``: Windows,
    macOS), or SIGINT is blocked already (by a caller, whose pending signal it is), numpy is
    imported as it is anywhere."""
    if not hasattr(signal, "sigtimedwait"):
        importlib.import_module("numpy")
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    if signal.SIGINT in mask:   # blocked before: the mask is as it was
        importlib.import_module("numpy")
        return
    try:
        importlib.import_module("numpy")
    finally:
        senders = _senders_taken_then_unblocked(mask)
        if os.getpid() in senders:   # OpenBLAS's raise(SIGINT)
            raise BlasThreadsNotStarted()
        if senders:
            signal.raise_signal(signal.SIGINT)


def _senders_taken_then_unblocked(mask) -> set[int]:
    """``_senders_of_held_sigints``, then the signal ``mask`` as it was, even where taking them
    raises (a Ctrl-C that another thread received, which Python raises in this one wherever it
    is; a MemoryError): with SIGINT left blocked, a caller of ``fastp2p.cli.main`` that goes on
    (the Python API) got no Ctrl-C again."""
    try:
        return _senders_of_held_sigints()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _senders_of_held_sigints() -> set[int]:
    """The pids that sent the SIGINTs held pending while blocked, taken. One sent to this
    thread (OpenBLAS's raise) and one sent to the process (a Ctrl-C) are held apart: both are
    taken."""
    senders = set()
    while (sigint := signal.sigtimedwait({signal.SIGINT}, 0)) is not None:
        senders.add(sigint.si_pid)
    return senders
