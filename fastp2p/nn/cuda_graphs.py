"""CUDA-graph capture, the one helper for every caller: the training step (fastp2p.train.engine),
the benchmark peers and kernel timings (fastp2p.bench, benchmarks/). It sits in nn, the lowest
layer among its users, so graphed inference can use it too.

PyTorch's whole-network recipe: warm-up calls on a side stream (cuDNN autotuning, optimizer
state, AccumulateGrad streams, allocator growth), then one call recorded — not run — by
``torch.cuda.graph``; every later step is a replay.
"""
import torch


def run_on_side_stream(fn, device=None):
    """``fn()`` on a fresh side stream ordered after, and before, the current stream's work."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        result = fn()
    current.wait_stream(side)
    return result


def capture_graph(fn):
    """(graph, what ``fn()`` returned): the call recorded as one CUDA graph, not run.

    thread_local: a data loader's pin-memory thread may call CUDA during the capture, which the
    default (global) mode would turn into a capture error.
    """
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        result = fn()
    return graph, result


class GraphReplay:
    """Replays a captured graph. The graph reads and writes memory it does not own (parameters,
    optimizer state, the static inputs); holding their owners here keeps that memory alive for
    as long as the graph can be replayed."""

    def __init__(self, graph, *owners):
        self.graph, self.owners = graph, owners

    def __call__(self):
        self.graph.replay()


def capture(fn, warmup_calls: int = 3) -> GraphReplay:
    """``fn()`` warmed up ``warmup_calls`` times on a side stream, then captured; returns its
    ``GraphReplay``, which keeps ``fn`` and what it holds alive."""
    run_on_side_stream(lambda: [fn() for _ in range(warmup_calls)])
    graph, _ = capture_graph(fn)
    return GraphReplay(graph, fn)
