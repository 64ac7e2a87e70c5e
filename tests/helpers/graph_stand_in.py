"""fastp2p.graphed's choice between replay, capture and the eager forward, driven on the CPU: a
tensor that GraphedModule takes for a CUDA input, and a capture that runs the forward eagerly and
keeps a counted stand-in for the CUDA graph (real replays need a GPU: tests/test_graphed.py)."""
import torch

from fastp2p.nn.graph_replay import GraphedModule, _Capture


class OnCuda(torch.Tensor):
    """A CPU tensor that GraphedModule takes for a CUDA input (it asks ``is_cuda``)."""

    @property
    def is_cuda(self):
        return True


class StandInGraph:
    """torch.cuda.CUDAGraph's replay, counted."""

    def __init__(self):
        self.replays = 0

    def replay(self):
        self.replays += 1


def capture_on_the_cpu(monkeypatch, note=lambda: None) -> list:
    """Make every capture an eager forward whose output a replay returns; each capture appends
    ``note()`` to the returned list."""
    notes = []

    def stand_in_capture(self, input):
        notes.append(note())
        plain = input.as_subclass(torch.Tensor)
        output = self.module(plain)
        return output, _Capture(StandInGraph(), plain.clone(), output.clone(),
                                self._tensors.state(), [], [])

    monkeypatch.setattr(GraphedModule, "_capture", stand_in_capture)
    return notes
