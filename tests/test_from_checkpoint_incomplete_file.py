"""from_checkpoint of a file that has the configuration its keys tell but lacks, adds or reshapes
entries (an incomplete or edited file): load_state_dict says so, but from_checkpoint rewrapped
every mismatch with advice about norm factories ("its norm layers' settings ... cannot be
inferred from the keys; pass the norm factory it was built with"), which cannot help: the
network it built is the file's own configuration. It now raises load_state_dict's mismatch as
it is; a file whose norm layers had other settings keeps the norm advice."""
import functools

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn.checkpoint import CheckpointMismatch

NETWORKS = {
    "UNet": lambda nl=None: fastp2p.UNet(3, 3, 5, 4, nl),
    "PatchDiscriminator": lambda nl=None: fastp2p.PatchDiscriminator(6, 4, 3, nl),
    "PixelDiscriminator": lambda nl=None: fastp2p.PixelDiscriminator(6, 4, nl),
}


def _without_one_batch_count(state_dict):
    """state_dict() keeps each BatchNorm's saved version 2, for which torch does not put in a
    missing batch count: the reference refuses such a file too."""
    dropped = next(key for key in state_dict if key.endswith(".num_batches_tracked"))
    del state_dict[dropped]
    return state_dict, dropped


@pytest.mark.parametrize("given_as", ["path", "state_dict"])
@pytest.mark.parametrize("network", NETWORKS)
def test_an_incomplete_file_is_named_so_without_norm_advice(network, given_as, tmp_path):
    cls = type(NETWORKS[network]())
    state, dropped = _without_one_batch_count(NETWORKS[network]().state_dict())
    source = state
    if given_as == "path":
        source = tmp_path / "net.pth"
        torch.save(state, source)
    with pytest.raises(CheckpointMismatch) as raised:
        cls.from_checkpoint(source)
    first_line, details = str(raised.value).split("\n", 1)
    assert first_line.startswith(f"checkpoint does not fit {network}(")
    assert first_line.endswith("the file has this configuration, but not all its entries "
                               "(1 missing): an incomplete or edited file.")
    assert "norm_layer" not in first_line and "affine=" not in first_line
    assert details == f"details: 1 missing: {dropped}"
    assert raised.value.incomplete_file


# Norm layers whose settings the keys do not tell: affine weights without running statistics
# (which the reference gives no convolution bias) read as norm "none".
UNTOLD_NORMS = {"batch without statistics": functools.partial(nn.BatchNorm2d,
                                                               track_running_stats=False),
                "group": functools.partial(nn.GroupNorm, 1)}


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("saved_with", UNTOLD_NORMS)
def test_a_file_of_norm_layers_with_other_settings_keeps_the_norm_advice(network, saved_with):
    """Its configuration read off the keys is "none", whose layers lack the affine entries."""
    cls = type(NETWORKS[network]())
    state = NETWORKS[network](UNTOLD_NORMS[saved_with]).state_dict()
    with pytest.raises(ValueError) as raised:
        cls.from_checkpoint(state)
    assert not getattr(raised.value, "incomplete_file", False)
    first_line = str(raised.value).split("\n", 1)[0]
    assert first_line.startswith(f"the state_dict does not fit {network}(")
    assert "norm_layer=" in first_line


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("saved_with", UNTOLD_NORMS)
def test_a_file_of_norm_layers_of_another_type_is_not_called_incomplete(network, saved_with):
    """The keys read as norm "none": the file's norm entries sit at the built network's Identity
    layers; load_state_dict called such a file incomplete or edited (and from_checkpoint would
    then have dropped its norm advice)."""
    file = NETWORKS[network](UNTOLD_NORMS[saved_with]).state_dict()
    cls = type(NETWORKS[network]())
    module = cls(**cls._infer_config(file))
    with pytest.raises(CheckpointMismatch) as raised:
        module.load_state_dict(file)
    first_line = str(raised.value).split("\n", 1)[0]
    assert "the file has this configuration, but its norm layers have other entries" in first_line
    assert "incomplete" not in first_line and not raised.value.incomplete_file
