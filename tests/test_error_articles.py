"""Errors that name a type put "a" or "an" before it as English does ("holds an int")."""
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.kernels.conv_fused_types import IDENTITY
from fastp2p.nn.checks import with_article
from fastp2p.nn.fused_conv import fused_conv_norm


@pytest.mark.parametrize("word, expected", [
    ("int", "an int"), ("OrderedDict", "an OrderedDict"), ("InstanceNorm2d", "an InstanceNorm2d"),
    ("dict", "a dict"), ("str", "a str"), ("Tensor", "a Tensor"), ("UNet", "a UNet")])
def test_with_article(word, expected):
    assert with_article(word) == expected


@pytest.mark.parametrize("entry, held", [
    ({"state_dict": OrderedDict(w=torch.zeros(1))}, "'state_dict' holds an OrderedDict"),
    ({"format": 2, "w": torch.zeros(1)}, "'format' holds an int"),
    ({"epoch": "3"}, "'epoch' holds a str")])
def test_from_checkpoint_names_what_an_entry_holds(tmp_path, entry, held):
    path = tmp_path / "bundle.pth"
    torch.save(entry, path)
    with pytest.raises(ValueError, match=held + ", not a tensor"):
        fastp2p.UNet.from_checkpoint(path)


def test_fused_conv_norm_names_the_norm_it_refuses():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with pytest.raises(ValueError, match="got an InstanceNorm2d$"):
        fused_conv_norm(conv, nn.InstanceNorm2d(2), [torch.zeros(1, 2, 4, 4)], [IDENTITY], 0.2,
                        torch.float32, output_activation="tanh")
