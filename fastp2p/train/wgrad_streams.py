"""The side streams that run the convolutions' weight gradients in the training step
(``Pix2PixEngine(split_conv_backward=True)``; the split itself and why it keeps every update
bit for bit: ``fastp2p.ops.split_conv_backward``).

A convolution's backward node runs on the stream its forward ran on: the step's main stream,
or with ``side_streams=True`` the real pair's side stream for D's real-pair forward. Each of
those gets its own wgrad stream: with one shared wgrad stream, a join on the main stream
would also wait for the real pair's wgrads queued there before it (and they for the real
pair's stream), tying the two branches of D's backward together that side streams keeps
apart. The streams are created once, before any capture: a captured graph replays the streams
it was captured with, and the eager warm-up steps and the capture (each on its own stream
that is neither of the above) take the main stream's wgrad stream.
"""
import torch

from fastp2p.train.step_streams import SideStream, StepStreams


class WgradSideStreams:
    """``fastp2p.ops.split_conv_backward.WgradStreams`` on one CUDA device: one wgrad side
    stream for each stream in ``branch_streams`` (the side streams on which the step runs
    network forwards), one for every other stream."""

    def __init__(self, device: torch.device, branch_streams=()):
        self.device = device
        self._main = SideStream(device)
        self._by_stream = {stream.cuda_stream: SideStream(device) for stream in branch_streams}

    def for_current_stream(self) -> StepStreams:
        current = torch.cuda.current_stream(self.device).cuda_stream
        return self._by_stream.get(current, self._main)
