"""fastp2p.ops exports its public ops (ops/README.md, step 5), the fused convolution included:
``fastp2p.ops.conv_norm_act`` is the op, not its module, and the package docstring names the
transposed convolution's measured CPU forms."""
import importlib

import pytest
import torch

import fastp2p.ops as ops
from fastp2p.ops.conv_transpose import CPU_FORMS

conv_norm_act_module = importlib.import_module("fastp2p.ops.conv_norm_act")
conv_transpose_module = importlib.import_module("fastp2p.ops.conv_transpose")


def test_the_fused_convolution_is_exported_as_an_op():
    assert "conv_norm_act" in ops.__all__
    assert ops.conv_norm_act is conv_norm_act_module.conv_norm_act
    # the op's own check of its arguments, not "'module' object is not callable"
    with pytest.raises(ValueError, match="one InputTransform per source"):
        ops.conv_norm_act([torch.randn(1, 3, 8, 8)], [], torch.randn(8, 3, 4, 4), stride=2,
                          padding=1)


def test_the_transposed_convolution_is_exported_and_its_forms_documented():
    assert "conv_transpose2d" in ops.__all__
    assert ops.conv_transpose2d is conv_transpose_module.conv_transpose2d
    doc = ops.__doc__.lower()
    assert all(form in doc for form in CPU_FORMS)


def test_every_exported_name_is_there():
    assert all(hasattr(ops, name) for name in ops.__all__)
