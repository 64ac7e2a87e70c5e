"""A network file whose first convolution alone was widened (1024 filters, the rest ngf 4) is
named as an edited or damaged file: `fastp2p test` advised "pass ... --ngf 1024 as it was
trained with", which led to 47 shape mismatches. A whole file of other options is still
advised its options."""
import pytest
import torch

import fastp2p
from fastp2p.train.checkpoints import CheckpointFolder


def _folder_with(tmp_path, state):
    folder = CheckpointFolder(tmp_path, "run", advice="test another --epoch")
    folder.path.mkdir()
    torch.save(state, folder.file("latest", "net_G.pth"))
    return folder


def test_a_file_widened_at_one_layer_gets_no_width_advice(tmp_path):
    state = fastp2p.UNet(3, 3, 5, ngf=4).state_dict()
    state["model.model.0.weight"] = torch.zeros(1024, 3, 4, 4)
    folder = _folder_with(tmp_path, state)
    with pytest.raises(ValueError) as refusal:
        folder.load_network(fastp2p.UNet(3, 3, 5, ngf=4), "latest", "G")
    first_line = str(refusal.value).splitlines()[0]
    assert first_line.endswith("others differ): an edited or damaged file; test another "
                               "--epoch"), first_line
    assert "as it was trained with" not in first_line


def test_a_whole_file_of_another_width_is_advised_its_width(tmp_path):
    folder = _folder_with(tmp_path, fastp2p.UNet(3, 3, 5, ngf=8).state_dict())
    with pytest.raises(ValueError, match="pass --netG unet_32 --ngf 8 .* as it was trained with"):
        folder.load_network(fastp2p.UNet(3, 3, 5, ngf=4), "latest", "G")
