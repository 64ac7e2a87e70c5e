"""torchrun's LOCAL_RANK is read in one place (fastp2p.torchrun_variables) and parsed one way,
for the device a process takes and for whether it says its node's refusals
(``says_for_its_node``). An empty one, which torchrun never sets, counts as 0, as an empty
WORLD_SIZE counts as 1: ``launched_local_rank`` raised ValueError for it (``int("")``) where
``says_for_its_node``, reading it apart, took it as 0."""
import pytest

from fastp2p.command_errors import says_for_its_node
from fastp2p.torchrun_variables import launched_local_rank


@pytest.mark.parametrize("local_rank, expected", [(None, 0), ("", 0), ("0", 0), ("1", 1),
                                                  ("3", 3)])
def test_local_rank_is_parsed_one_way_for_the_device_and_for_the_node_s_refusals(
        monkeypatch, local_rank, expected):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert launched_local_rank() == expected
    assert says_for_its_node() == (expected == 0)
