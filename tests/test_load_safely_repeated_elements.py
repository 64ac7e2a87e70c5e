"""A checkpoint holding a stride-0 view (``torch.zeros(1).expand(2**40)``, which torch.save
writes as a few bytes) is refused as it loads: before, the NaN / Inf check of `fastp2p test`
and `--continue_train` visited its 2**40 elements (hours), and ``UNet.from_checkpoint`` built
the network such views described (any size, from a file of kilobytes)."""
import time

import pytest
import torch

from fastp2p import UNet
from fastp2p.nn.checkpoint import load_safely


def test_a_stride_0_view_is_refused_at_once(tmp_path):
    path = tmp_path / "latest_net_G.pth"
    torch.save({"w": torch.ones(3), "hostile": torch.zeros(1).expand(2 ** 40)}, path)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"latest_net_G\.pth: refused, .*1,099,511,627,776 "
                                         r"elements over 4 stored bytes"):
        load_safely(path)
    assert time.monotonic() - start < 10


def test_an_overlapping_view_nested_in_containers_is_refused(tmp_path):
    path = tmp_path / "state.pth"
    overlapping = torch.arange(5.0).as_strided((3, 3), (1, 1))  # 9 elements over 5 stored
    torch.save({"optimizer": {"state": [(1, {"exp_avg": overlapping})]}}, path)
    with pytest.raises(ValueError, match="stride-0 or overlapping view"):
        load_safely(path)


def test_views_within_their_storage_load(tmp_path):
    path = tmp_path / "views.pth"
    base = torch.arange(12.0)
    torch.save({"slice": base[2:5], "transposed": base.view(3, 4).t(), "empty": base[:0]}, path)
    loaded = load_safely(path)
    assert torch.equal(loaded["slice"], base[2:5])
    assert torch.equal(loaded["transposed"], base.view(3, 4).t())


def test_from_checkpoint_refuses_views_that_describe_a_huge_network(tmp_path):
    """The keys and shapes of an ngf=2048 U-Net, each a stride-0 view of one value."""
    shapes = {k: v.shape for k, v in UNet(3, 3, 5, ngf=8).state_dict().items()}
    big = {k: torch.zeros(1).expand(tuple(s * 256 if i < 2 and s > 3 else s
                                          for i, s in enumerate(shape)))
           if shape else torch.zeros(()) for k, shape in shapes.items()}
    path = tmp_path / "huge.pth"
    torch.save(big, path)
    with pytest.raises(ValueError, match="huge.pth: refused"):
        UNet.from_checkpoint(path)
