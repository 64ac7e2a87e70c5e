"""A checkpoint whose keys tell the module's own configuration but that still does not fit: the
message said "the file looks like <that very configuration>; use from_checkpoint(path), or build
the module with that configuration", which cannot help (from_checkpoint builds the same module).
It now says the file is incomplete or edited, or, where the entries that differ are whole sets a
norm layer's affine= / track_running_stats= settings add, that the norm layers had other
settings. A file of another configuration keeps its advice."""
import functools

import pytest
import torch
import torch.nn as nn

import fastp2p

NETWORKS = {
    "UNet": lambda nl=None, **kw: fastp2p.UNet(3, 3, 5, 4, nl, **kw),
    "PatchDiscriminator": lambda nl=None, **kw: fastp2p.PatchDiscriminator(6, 4, 3, nl, **kw),
    "PixelDiscriminator": lambda nl=None, **kw: fastp2p.PixelDiscriminator(6, 4, nl, **kw),
}


def _message(module, state_dict):
    with pytest.raises(ValueError) as raised:
        module.load_state_dict(state_dict)
    return str(raised.value).split("\n", 1)


def _batch_counts(state_dict):
    return [key for key in state_dict if key.endswith(".num_batches_tracked")]


@pytest.mark.parametrize("network", NETWORKS)
def test_a_file_lacking_one_batch_count_is_named_incomplete(network):
    """state_dict() keeps each BatchNorm's saved version 2, for which torch does not put in a
    missing batch count: the reference refuses such a file too."""
    build = NETWORKS[network]
    state = build().state_dict()
    dropped = _batch_counts(state)[0]
    del state[dropped]
    first_line, details = _message(build(), state)
    assert first_line.startswith(f"checkpoint does not fit {network}(")
    assert first_line.endswith("the file has this configuration, but not all its entries "
                               "(1 missing): an incomplete or edited file.")
    assert "from_checkpoint" not in first_line and "norm_layer" not in first_line
    assert details == f"details: 1 missing: {dropped}"


def test_every_kind_of_difference_is_counted_and_the_keys_listed_capped():
    state = NETWORKS["UNet"]().state_dict()
    counts = _batch_counts(state)
    for key in counts:
        del state[key]
    state["extra.weight"] = torch.zeros(2)
    state["model.model.1.model.1.weight"] = torch.zeros(1, 1, 4, 4)
    first_line, details = _message(NETWORKS["UNet"](), state)
    assert (f"not all its entries ({len(counts)} missing, 1 unexpected, 1 of another shape): "
            "an incomplete or edited file.") in first_line
    assert len(counts) > 6 and f"(+{len(counts) - 6} more)" in details
    assert "1 unexpected: extra.weight" in details
    assert "model.model.1.model.1.weight: file (1, 1, 4, 4) vs module (8, 4, 4, 4)" in details


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("built_with, saved_with, file_norm", [
    ("instance", functools.partial(nn.InstanceNorm2d, affine=True),
     "InstanceNorm2d(affine=True)"),
    ("instance", functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=True),
     "InstanceNorm2d(affine=True, track_running_stats=True)"),
    ("batch", functools.partial(nn.BatchNorm2d, affine=False), "BatchNorm2d(affine=False)"),
], ids=["affine", "affine tracking", "batch without affine"])
def test_a_file_of_norm_layers_with_other_settings_names_them(network, built_with, saved_with,
                                                              file_norm):
    """The keys tell these settings (stop 55; before, the message said the norm layers had
    other settings, which the keys could not tell), so from_checkpoint builds the file's
    network."""
    build = NETWORKS[network]
    first_line, _ = _message(build(norm=built_with), build(saved_with).state_dict())
    assert f"the file looks like {network}(" in first_line
    assert f"norm={file_norm!r}" in first_line
    assert f"{network}.from_checkpoint(path)" in first_line


@pytest.mark.parametrize("network", NETWORKS)
def test_one_running_statistic_alone_is_no_settings_difference(network):
    build = NETWORKS[network]
    state = build().state_dict()
    del state[next(key for key in state if key.endswith(".running_var"))]
    first_line, _ = _message(build(), state)
    assert "not all its entries (1 missing): an incomplete or edited file." in first_line


@pytest.mark.parametrize("network", NETWORKS)
def test_a_file_of_another_configuration_keeps_its_advice(network):
    build = NETWORKS[network]
    first_line, _ = _message(build(norm="instance"), build(norm="batch").state_dict())
    assert "the file looks like" in first_line and "norm='batch'" in first_line
    assert f"{network}.from_checkpoint(path)" in first_line
