"""Recorders for the CUDA stream seams of the training step, for CPU tests: everything runs
inline, and what would run where is logged."""
import contextlib

import torch

from fastp2p.ops import split_conv_backward as split_conv


class RecordingStreams:
    """``StepStreams`` (fastp2p.train.step_streams) that runs everything inline and logs the
    fork and the joins (with the number of tensors handed back); ``current`` is the stream
    that work issued now would run on."""

    def __init__(self, log: list | None = None):
        """``log``: the list to log into (a test may log its own events there too)."""
        self.log, self.current, self.joined = [] if log is None else log, "main", []

    def fork(self):
        self.log.append("fork")

    @contextlib.contextmanager
    def side(self):
        assert self.current == "main", "side regions do not nest"
        self.current = "side"
        try:
            yield
        finally:
            self.current = "main"

    def join(self, *made_on_side):
        self.log.append(f"join {len(made_on_side)}")
        self.joined.append(made_on_side)


class RecordingWgradStreams(RecordingStreams):
    """``WgradStreams`` (fastp2p.ops.split_conv_backward) for a CPU: one recorder for every
    stream; ``watch`` adds each ``convolution_backward`` call of the Function to the log, with
    its output mask and the stream it was issued on."""

    device = torch.device("cpu")

    def for_current_stream(self):
        return self

    def watch(self, monkeypatch):
        """Log every convolution_backward the Function issues."""
        aten = split_conv._aten

        class Logged:
            @staticmethod
            def convolution_backward(*args):
                mask = "".join("x" if bit else "-" for bit in args[-1])
                self.log.append(f"backward {mask} on {self.current}")
                return aten.convolution_backward(*args)

            convolution = aten.convolution

        monkeypatch.setattr(split_conv, "_aten", Logged)
        return self


# One split backward node: the wgrad (weight and bias) on the side stream between the fork and
# the join, the dgrad on the main stream, its two tensors handed back at the join.
SPLIT_NODE = ["fork", "backward -xx on side", "backward x-- on main", "join 2"]
