"""Datasets for the loader's workers at the limit on processes and threads, in a module of their
own that imports little: a worker started by forkserver or spawn imports the module its dataset
is defined in, and a test module's imports cost seconds more there."""
import os
import subprocess
import sys
import threading

import torch

from fastp2p.data.errors import THREAD_NOT_STARTED_EXIT

# A thread stack no address space maps (1 PiB): a thread asking for it is refused with EAGAIN,
# Python's "can't start new thread", as at the limit on processes and threads
_UNMAPPABLE_STACK = 1 << 50


def unmappable_stack_refused() -> str | None:
    """Why this Python refuses even to take that size, which it only tries at a thread's start
    (a 32-bit one: OverflowError; a C library that caps a stack's size: ValueError), so that no
    dataset here can refuse its worker's threads; None where it takes it. Asked of a Python of
    its own: set here, the size would be every thread's that this process starts meanwhile."""
    asked = subprocess.run([sys.executable, "-c",
                            f"import threading; threading.stack_size({_UNMAPPABLE_STACK})"],
                           capture_output=True, text=True)
    if asked.returncode == 0:
        return None
    return (asked.stderr.strip().splitlines() or ["no reason given"])[-1]


class RefusesItsWorkersThreads(torch.utils.data.Dataset):
    """Each item sets its process's stack size for new threads to one that cannot be mapped: a
    worker's queue feeder, started as it sends its first batch, cannot start, in the worker
    itself whatever its start method (nothing patched from the main process)."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        threading.stack_size(_UNMAPPABLE_STACK)
        return torch.tensor(index)


class ExitsWithTheThreadCode(torch.utils.data.Dataset):
    """Exits with the code a worker exits with for a thread it could not start, by itself."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        os._exit(THREAD_NOT_STARTED_EXIT)
