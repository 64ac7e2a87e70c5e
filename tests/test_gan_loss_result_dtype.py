"""fastp2p.GANLoss returns the reference's dtype, not the logits': the reference's float32 label
buffer promotes bfloat16 / float16 logits' vanilla and lsgan losses to float32, and
BCE-with-logits returns its target's dtype, so float64 logits' vanilla loss is float32 too;
wgangp's mean keeps the logits' dtype; under autocast both label losses run in float32 or
wider. Values and gradients against the reference in float64; and ``target_is_real`` is read by
its truth value, as the reference's ``if target_is_real:`` reads it."""
import numpy as np
import pytest
import torch

import fastp2p
from fastp2p.reference import GANLoss as ReferenceGANLoss
from helpers.tolerances import FP32_SINGLE_OP, assert_close

MODES = ["vanilla", "lsgan", "wgangp"]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
# The error of a result rounded to its dtype (the loss of exact logits, float32 arithmetic).
BOUND = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: FP32_SINGLE_OP,
         torch.float64: FP32_SINGLE_OP}


def _logits(dtype):
    gen = torch.Generator().manual_seed(7)
    return (torch.randn(2, 1, 6, 5, generator=gen, dtype=torch.float64) * 2).to(dtype)


def _check(mode, logits_dtype, label_dtype, target_is_real, autocast_dtype=None):
    logits = _logits(logits_dtype)
    ours = fastp2p.GANLoss(mode).to(label_dtype)
    theirs = ReferenceGANLoss(mode).to(label_dtype)
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        x = logits.clone().requires_grad_()
        loss = ours(x, target_is_real)
        expected_dtype = theirs(logits, target_is_real).dtype
    assert loss.dtype == expected_dtype, (mode, logits_dtype, label_dtype, loss.dtype)
    loss.backward()
    x64 = logits.double().requires_grad_()
    expected = ReferenceGANLoss(mode).double()(x64, bool(target_is_real))
    expected.backward()
    what = f"{mode} {logits_dtype} label {label_dtype} autocast {autocast_dtype}"
    assert_close(loss, expected, BOUND[loss.dtype], what)
    assert x.grad.dtype == logits_dtype
    assert_close(x.grad, x64.grad, BOUND[logits_dtype], what + " grad")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logits_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("label_dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_the_result_has_the_references_dtype(mode, logits_dtype, label_dtype):
    for target_is_real in (True, False):
        _check(mode, logits_dtype, label_dtype, target_is_real)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logits_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("label_dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_the_result_has_the_references_dtype_under_cpu_autocast(mode, logits_dtype,
                                                                label_dtype):
    """bfloat16 labels too: autocast widens the label losses to float32 whatever the labels'
    dtype (a result in the labels' and logits' bfloat16 passed the wider labels)."""
    _check(mode, logits_dtype, label_dtype, True, autocast_dtype=torch.bfloat16)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_labels_of_two_dtypes_give_the_references_dtype(mode):
    """A float64 real label beside a float32 fake one (buffers replaced by hand): the fake
    target's loss has the dtype the reference gives it, not the real label's."""
    ours, theirs = fastp2p.GANLoss(mode), ReferenceGANLoss(mode)
    for net in (ours, theirs):
        net.real_label = torch.tensor(1.0, dtype=torch.float64)
    logits = _logits(torch.float32)
    for target_is_real in (True, False):
        assert ours(logits, target_is_real).dtype == theirs(logits, target_is_real).dtype


def test_the_usual_cases_by_name():
    """bfloat16 logits: a float32 loss (was bfloat16); float64 logits, vanilla: float32 (was
    float64), lsgan: float64."""
    for dtype in (torch.bfloat16, torch.float16):
        assert fastp2p.GANLoss("vanilla")(_logits(dtype), True).dtype == torch.float32
        assert fastp2p.GANLoss("lsgan")(_logits(dtype), True).dtype == torch.float32
    assert fastp2p.GANLoss("vanilla")(_logits(torch.float64), True).dtype == torch.float32
    assert fastp2p.GANLoss("lsgan")(_logits(torch.float64), True).dtype == torch.float64
    assert fastp2p.GANLoss("wgangp")(_logits(torch.bfloat16), True).dtype == torch.bfloat16


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target_is_real", [1, 0, np.bool_(True), np.bool_(False),
                                            torch.tensor(True), torch.tensor(False), 2.5, "",
                                            [0]],
                         ids=["1", "0", "np_true", "np_false", "tensor_true", "tensor_false",
                              "2.5", "empty_str", "list"])
def test_any_truthy_target_is_real_is_read_as_the_reference_reads_it(mode, target_is_real):
    _check(mode, torch.float32, torch.float32, target_is_real)


def test_a_target_without_a_truth_value_fails_as_in_the_reference():
    logits = _logits(torch.float32)
    for loss in (ReferenceGANLoss("vanilla"), fastp2p.GANLoss("vanilla")):
        with pytest.raises(RuntimeError, match="ambiguous"):
            loss(logits, torch.tensor([True, False]))


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_prediction_gives_the_references_nan(mode):
    """The mean over an empty batch's logits: nan, with an empty gradient, as the reference."""
    results = []
    for loss in (ReferenceGANLoss(mode), fastp2p.GANLoss(mode)):
        x = torch.rand(0, 1, 4, 4, requires_grad=True)
        value = loss(x, True)
        value.backward()
        results.append((value.dtype, value.isnan().item(), x.grad.shape))
    assert results[0] == results[1] == (torch.float32, True, (0, 1, 4, 4))
