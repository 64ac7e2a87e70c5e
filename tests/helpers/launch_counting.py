"""Counting, on the CPU, what a Triton launcher runs besides its kernels: the ATen ops that would
launch work on a GPU (views and allocations left out), with each Triton kernel's launches
counted and run while the op counter is paused (the interpreter's own staging of the kernels'
arguments dispatches ATen ops that a GPU launch does not)."""
import collections

from torch.utils._python_dispatch import TorchDispatchMode

NO_LAUNCH = {"empty", "empty_like", "new_empty", "empty_strided", "slice", "select", "view",
             "as_strided", "detach", "alias"}


class LaunchingOps(TorchDispatchMode):
    """``ops``: the launching ATen ops dispatched outside the kernels; ``launches``: the Triton
    launches by kernel name."""

    def __init__(self):
        super().__init__()
        self.ops, self.launches = collections.Counter(), collections.Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused and name not in NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


class CountedKernel:
    """Stands in for the Triton kernel ``name``: ``kernel[grid](...)`` counted, run paused."""

    def __init__(self, name, kernel, counter: LaunchingOps):
        self.name, self.kernel, self.counter = name, kernel, counter

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.counter.launches[self.name] += 1
            self.counter.paused = True
            try:
                self.kernel[grid](*args, **kwargs)
            finally:
                self.counter.paused = False
        return launch


def count_launches(monkeypatch, kernels, names) -> LaunchingOps:
    """A counter with ``kernels``' kernels ``names`` replaced by counted stand-ins."""
    counter = LaunchingOps()
    for name in names:
        monkeypatch.setattr(kernels, name, CountedKernel(name, getattr(kernels, name), counter))
    return counter
