"""A checkpoint that describes far more than its file holds is refused as it loads
(fastp2p.nn.checkpoint_size): a stride-0 view (``torch.zeros(1).expand(2**40)``, a few bytes
on disk), whose 2**40 elements the NaN / Inf check of `fastp2p test` and `--continue_train`
visited (hours), and whose shapes ``UNet.from_checkpoint`` built a network of; one tensor under
thousands of names (the check visits it under each); lists nested 40 deep, each holding its
inner list twice, and a list that holds itself (the structure check walked them forever)."""
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
    assert loaded["empty"].shape == (0,)


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


def _refused_within_seconds(path, match):
    start = time.monotonic()
    with pytest.raises(ValueError, match=match):
        load_safely(path)
    assert time.monotonic() - start < 10


def test_a_container_that_holds_itself_is_refused(tmp_path):
    looped_list, looped_dict = [torch.ones(2)], {"w": torch.ones(2)}
    looped_list.append(looped_list)
    looped_dict["self"] = looped_dict
    for name, value in (("list", looped_list), ("dict", {"state": looped_dict})):
        torch.save(value, tmp_path / f"{name}.pth")
        _refused_within_seconds(tmp_path / f"{name}.pth", "a container in it holds itself")


def test_lists_shared_down_40_levels_are_refused(tmp_path):
    nested = [torch.ones(1)]
    for _ in range(40):
        nested = [nested, nested]
    torch.save({"w": nested}, tmp_path / "nested.pth")
    assert (tmp_path / "nested.pth").stat().st_size < 10_000
    _refused_within_seconds(tmp_path / "nested.pth", "entries counted at each reference")


def test_one_tensor_under_thousands_of_names_is_refused(tmp_path):
    shared = torch.ones(1 << 18)   # 1 MiB, stored once
    torch.save({f"w{i}": shared for i in range(2000)}, tmp_path / "shared.pth")
    _refused_within_seconds(tmp_path / "shared.pth", "the same tensors under many names")


@pytest.mark.parametrize("names", [2, 3])
def test_the_bound_is_twice_the_bytes_stored(tmp_path, names):
    """A tied weight refers to its bytes twice and loads; a third name is refused (the bound
    at 1000 times passed every test)."""
    shared = torch.ones(1 << 22)   # 16 MiB, past the bound's 1 MiB of slack
    path = tmp_path / "shared.pth"
    torch.save({f"w{i}": shared for i in range(names)}, path)
    if names == 3:
        _refused_within_seconds(path, "refer to 50,331,648 bytes over 16,777,216 stored")
    else:
        assert len(load_safely(path)) == 2


def test_distinct_views_of_one_storage_count_against_it(tmp_path):
    """Other tensor objects over the same bytes: counted by storage, not by object."""
    base = torch.ones(1 << 20)   # 4 MiB
    torch.save({f"v{i}": base.view(-1) for i in range(3)}, tmp_path / "views.pth")
    _refused_within_seconds(tmp_path / "views.pth", "the same tensors under many names")


def test_the_sharing_real_states_have_loads(tmp_path):
    """Tied weights, and torch.optim's param_groups sharing their defaults' tuples."""
    net = torch.nn.Linear(256, 256)
    optimizer = torch.optim.Adam([{"params": [net.weight]}, {"params": [net.bias]}])
    net(torch.ones(1, 256)).sum().backward()
    optimizer.step()
    state = {"tied": net.weight, "also_tied": net.weight, "optimizer": optimizer.state_dict()}
    torch.save(state, tmp_path / "real.pth")
    loaded = load_safely(tmp_path / "real.pth")
    assert torch.equal(loaded["tied"], net.weight.detach())
    assert len(loaded["optimizer"]["param_groups"]) == 2
