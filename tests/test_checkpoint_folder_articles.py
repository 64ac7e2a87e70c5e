"""A run folder's network file holding something else than a state_dict is named with the right
article ("holds an int", "holds a list"), as fastp2p.nn's own refusals are (checks.with_article)."""
import pytest
import torch

from fastp2p.train.checkpoints import CheckpointFolder


@pytest.mark.parametrize("held,expected", [(3, "holds an int,"), ([1.0], "holds a list,")])
def test_a_network_file_holding_no_state_dict_reads_as_english(tmp_path, held, expected):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(held, folder / "latest_net_G.pth")
    with pytest.raises(ValueError, match=expected):
        CheckpointFolder(tmp_path, "run").read_network("latest", "G")
