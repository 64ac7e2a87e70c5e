"""NaN-filled stand-ins for the buffers fastp2p.ops.backends.cudnn_graphs allocates, so an
element a graph (or the stand-in frontend) leaves unwritten fails the comparison. Shared by the
CPU and GPU tests, so a change of the allocators' signatures breaks the CPU tests too."""
import torch

from fastp2p.ops.backends import cudnn_graphs


def poison_graph_buffers(monkeypatch) -> None:
    def poisoned_nhwc(shape, key):
        return torch.full(shape, float("nan"), dtype=key.dtype, device=key.device
                          ).contiguous(memory_format=torch.channels_last)

    def poisoned_statistic(key, channels=None):
        return torch.full((channels or key.output[1],), float("nan"), dtype=torch.float32,
                          device=key.device)
    monkeypatch.setattr(cudnn_graphs, "_empty_nhwc", poisoned_nhwc)
    monkeypatch.setattr(cudnn_graphs, "_empty_statistic", poisoned_statistic)
