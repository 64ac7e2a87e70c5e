"""The reference meaning of norm-act and of the dropout mask is what nn modules compute."""
import pytest
import torch

from fastp2p.ops.dropout_rng import dropout_keep_mask
from fastp2p.ops.norm_act_reference import write_norm_act
from helpers.tolerances import FP32_SINGLE_OP, assert_close


def test_dropout_mask_is_reproducible_and_advances_with_offset():
    a = dropout_keep_mask((2, 3, 8, 8), 0.5, seed=7, offset=0)
    assert torch.equal(a, dropout_keep_mask((2, 3, 8, 8), 0.5, seed=7, offset=0))
    assert not torch.equal(a, dropout_keep_mask((2, 3, 8, 8), 0.5, seed=7, offset=a.numel()))
    assert not torch.equal(a, dropout_keep_mask((2, 3, 8, 8), 0.5, seed=8, offset=0))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_keeps_one_minus_p(p):
    n = 200_000
    kept = dropout_keep_mask((n,), p, seed=3, offset=11).double().mean().item()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(kept - (1 - p)) < 5 * sigma


def _python_uint32_keep(seed, offset, index, p):
    """The contract of kernels/dropout_rng.py, restated independently with Python integers."""
    def mix(h):
        h ^= h >> 16
        h = (h * 0x7FEB352D) & 0xFFFFFFFF
        h ^= h >> 15
        h = (h * 0x846CA68B) & 0xFFFFFFFF
        return h ^ (h >> 16)
    return mix((mix(seed & 0xFFFFFFFF) + offset + index) & 0xFFFFFFFF) >= int(p * 2 ** 32)


@pytest.mark.parametrize("seed,offset", [(1234, 99), (2 ** 40 + 5, 2 ** 33 - 7)])
def test_dropout_mask_bits_match_the_integer_contract(seed, offset):
    mask = dropout_keep_mask((64,), 0.3, seed=seed, offset=offset)
    assert mask.tolist() == [_python_uint32_keep(seed, offset, i, 0.3) for i in range(64)]


def test_dropout_mask_bits_are_pinned():
    """The bit pattern is a cross-backend contract (kernels, C++): freeze a few values."""
    mask = dropout_keep_mask((16,), 0.5, seed=1234, offset=99)
    assert mask.int().tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("norm,module", [
    ("instance", lambda c: torch.nn.InstanceNorm2d(c, affine=True)),
    ("batch", lambda c: torch.nn.BatchNorm2d(c)),
])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_torch_modules_and_writes_only_its_slice(norm, module, training):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    m = module(5).double().train(training)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        if norm == "batch":
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    running = (m.running_mean.clone(), m.running_var.clone()) if norm == "batch" else (None, None)
    out = torch.full((2, 9, 3, 4), float("nan"), dtype=torch.float64)
    write_norm_act(x, m.weight, m.bias, *running, out, 3, norm=norm, training=training,
                   momentum=0.1, eps=1e-5, activation="leaky_relu", slope=0.2, dropout_p=0.0,
                   seed=0, offset=0)
    expected = torch.nn.functional.leaky_relu(m(x), 0.2)
    assert_close(out[:, 3:8], expected, FP32_SINGLE_OP, "slice")
    assert out[:, :3].isnan().all() and out[:, 8:].isnan().all()
    if norm == "batch":
        assert_close(running[0], m.running_mean, FP32_SINGLE_OP, "running_mean")
        assert_close(running[1], m.running_var, FP32_SINGLE_OP, "running_var")

