"""Counting the ATen ops a piece of code dispatches that would launch work on a GPU, on a CPU:
the launch counters of benchmarks/count_*.py share it."""
import collections

from torch.utils._python_dispatch import TorchDispatchMode

# Views and allocations: dispatched as ATen ops, but no kernel runs for them.
NO_LAUNCH = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "detach", "view", "_unsafe_view",
    "_reshape_alias", "alias", "lift_fresh", "t", "expand", "permute", "unsqueeze", "squeeze",
    "select", "slice", "as_strided", "reshape", "transpose", "narrow", "unbind", "split"})


class OpCounter(TorchDispatchMode):
    """``ops``: how many times each launching ATen op ran inside the mode."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))
