"""Locks that a forked child process finds free.

A lock that another thread of the parent holds when the process forks stays held for good in the
child, where that thread does not exist: the child's first call that takes it hangs (a worker
forked while a serving thread rebuilt a layer's cached weights waited forever on that layer's
lock). So every lock fastp2p keeps beyond one call, which a forked child may take, is a
``ForkSafeLock``, and each forked child (``os.register_at_fork``) replaces all of them by free
ones. (Not kernels/'s ring-counter lock: that layer imports nothing of fastp2p, and its lock
comes before a CUDA launch, which torch refuses in a child forked after CUDA started.) What
such a lock guards must then be whole whenever another thread could be inside it: its holders
build a result first and publish it with one assignment, so a child finds the result or
nothing, never half of it (tests/test_fork_safe_locks.py). Never fork while holding one: the
child's lock is a new, free one, which its ``with`` block's end cannot release.
"""
import os
import threading
import weakref


class ForkSafeLock:
    """A ``threading.Lock`` (``reentrant``: an ``RLock``) for ``with`` blocks, free again in every
    forked child."""

    __slots__ = ("_reentrant", "_lock", "__weakref__")

    def __init__(self, reentrant: bool = False):
        self._reentrant = reentrant
        self._renew()
        _every_lock.add(self)

    def _renew(self) -> None:
        self._lock = threading.RLock() if self._reentrant else threading.Lock()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)


# Weak: a lock goes with what it guards (a layer's cache, a network's capture wrapper).
_every_lock: "weakref.WeakSet[ForkSafeLock]" = weakref.WeakSet()


def _renew_every_lock() -> None:
    for lock in list(_every_lock):
        lock._renew()


os.register_at_fork(after_in_child=_renew_every_lock)
