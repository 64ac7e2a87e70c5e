"""The Triton forward's own finalize and batch count on a GPU, inside a CUDA graph: every replay
merges the splits and counts the batch again (the arrival counters reset by their last user),
bit for bit as the same number of eager calls (run on a GPU; skipped without)."""
import pytest
import torch

pytestmark = pytest.mark.cuda

KWARGS = dict(norm="batch", training=True, momentum=0.1, eps=1e-5, activation="leaky_relu",
              slope=0.2, dropout_p=0.0, seed=0, offset=0)


def _state(c):
    """running_mean, running_var, num_batches_tracked as a fresh nn.BatchNorm2d has them."""
    return (torch.zeros(c, device="cuda"), torch.ones(c, device="cuda"),
            torch.zeros((), dtype=torch.int64, device="cuda"))


# the split path with many splits (an H200 takes 256 for this map), and the one-pass path
@pytest.mark.parametrize("shape", [(2, 64, 64, 64), (1, 8, 4, 4)], ids=["split", "one-pass"])
def test_graph_replays_finish_and_count_like_eager_calls(shape):
    from fastp2p.kernels import norm_act as kernels
    x = torch.randn(shape, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    x = (x * 2 + 0.5).contiguous(memory_format=torch.channels_last)
    *eager_running, eager_count = _state(shape[1])
    eager_out = torch.empty_like(x)
    for _ in range(4):
        eager_stats = kernels.norm_act_fwd(x, None, None, *eager_running, eager_out, 0,
                                           num_batches_tracked=eager_count, **KWARGS)
    *running, count = _state(shape[1])
    out = torch.empty_like(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: compiles, and allocates the counter ring
        kernels.norm_act_fwd(x, None, None, *running, out, 0, num_batches_tracked=count,
                             **KWARGS)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        stats = kernels.norm_act_fwd(x, None, None, *running, out, 0, num_batches_tracked=count,
                                     **KWARGS)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    assert count.item() == eager_count.item() == 4
    for mine, eager in zip((*running, out, *stats), (*eager_running, eager_out, *eager_stats)):
        assert torch.equal(mine, eager)
    for ring, _ in kernels._counter_rings.values():
        assert not ring.any()
