"""A BatchNorm's momentum=None (cumulative average) where nothing reads the momentum — eval with
running statistics, or batch statistics without them — runs as nn.BatchNorm2d does; it failed
with "float() argument must be ... not 'NoneType'" from the launcher. In training with running
statistics it is still refused in one line (the fused path keeps an exponential average)."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops import norm_act, norm_act_concat


def _inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 6, 6, generator=generator)
    return (x, torch.randn(4, generator=generator) * 0.1,
            torch.rand(4, generator=generator) + 0.5)


@pytest.mark.parametrize("training, with_stats", [(False, True), (True, False)],
                         ids=["eval-running-stats", "train-batch-stats"])
def test_momentum_none_where_nothing_reads_it(backend, training, with_stats):
    x, mean, var = _inputs()
    stats = (mean, var) if with_stats else (None, None)
    expected = F.relu(F.batch_norm(x.double(), *(s if s is None else s.double() for s in stats),
                                   training=training))
    got = norm_act(x, None, None, *stats, norm="batch", training=training, momentum=None,
                   activation="relu")
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    skip = torch.randn(2, 3, 6, 6)
    both = norm_act_concat(skip, x, None, None, *stats, norm="batch", training=training,
                           momentum=None)
    torch.testing.assert_close(both[:, 3:].double(), expected, rtol=1e-5, atol=1e-5)


def test_momentum_none_updating_running_stats_is_refused_in_one_line(backend):
    x, mean, var = _inputs()
    with pytest.raises(ValueError, match="momentum=None .* use a float momentum"):
        norm_act(x, None, None, mean, var, norm="batch", training=True, momentum=None)
