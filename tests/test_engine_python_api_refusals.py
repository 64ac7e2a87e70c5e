"""Pix2PixEngine's refusals found by a Python-API QA pass (r54): a batch with the wrong channel
count is refused before any forward (it was found inside D after G's train-mode forward had
moved its batch-norm statistics, and blamed on D's input_nc), and master_weights=True on a
machine where it cannot run is one ValueError, not Triton's ImportError."""
import copy
import sys

import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import parameters_and_buffers, random_batches, tiny_networks


@pytest.mark.parametrize("which, message", [
    ("real_B", "real_B has 1 channel(s): netD takes 6, real_A's 3 and real_B's 3 (netG's "
               "output_nc)"),
    ("real_A", "real_A has 1 channel(s) and netG takes 3 (its input_nc)")])
def test_a_wrong_channel_count_is_refused_before_any_forward(which, message):
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    real_A, real_B = random_batches(1)[0]
    batch = {"real_A": real_A, "real_B": real_B}
    batch[which] = batch[which][:, :1]
    before = [t.clone() for t in parameters_and_buffers(netG, netD)]
    with pytest.raises(ValueError) as refused:
        engine.step(batch["real_A"], batch["real_B"])
    assert str(refused.value) == message
    assert all(torch.equal(a, b) for a, b in zip(before, parameters_and_buffers(netG, netD)))
    assert engine.steps == 0


def test_master_weights_on_a_cpu_without_triton_is_a_value_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setitem(sys.modules, "triton", None)   # `import triton` fails, as uninstalled
    for name in ("fastp2p.kernels.adam", "fastp2p.train.master_weights_adam"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ValueError, match="master_weights=True needs the networks on a CUDA "
                                         "device, they are on cpu"):
        Pix2PixEngine(*tiny_networks(), master_weights=True)


def test_master_weights_without_triton_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    with pytest.raises(ValueError, match=r"triton is not installed: pip install "
                                         r"'fastp2p\[triton\]'"):
        Pix2PixEngine(*tiny_networks(), master_weights=True)   # TRITON_INTERPRET=1: CPU allowed


def test_a_network_of_another_kind_is_not_checked_for_channels():
    """Only fastp2p's networks say their input_nc; a module whose first registered Conv2d is
    not its input layer must still train (no channel check for it)."""
    class LateHead(torch.nn.Module):   # registers a 5-channel conv before its 3-channel input
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Conv2d(5, 3, 1)
            self.head = torch.nn.Conv2d(3, 5, 1)

        def forward(self, x):
            return torch.tanh(self.body(self.head(x)))
    engine = Pix2PixEngine(LateHead(), tiny_networks()[1])
    engine.step(*random_batches(1)[0])
    assert engine.steps == 1


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float64), (torch.bfloat16,
                                    torch.float32)], ids=["fp64", "bf16-with-fp32"])
def test_a_floating_batch_of_another_dtype_trains_as_its_float32_cast(dtypes, one_thread):
    """Not refused (as the README says): cast to float32 on the engine's device (an integer
    batch is: tests/test_engine_python_api_messages.py)."""
    netG, netD = tiny_networks()
    twins = copy.deepcopy((netG, netD))
    real_A, real_B = (t.to(dtype) for t, dtype in zip(random_batches(1)[0], dtypes))
    Pix2PixEngine(netG, netD).step(real_A, real_B)
    Pix2PixEngine(*twins).step(real_A.float(), real_B.float())
    assert all(torch.equal(a, b) for a, b in zip(parameters_and_buffers(netG, netD),
                                                 parameters_and_buffers(*twins)))


@pytest.mark.parametrize("option, value, expected", [
    ("lr", "2e-4", "a finite number >= 0"), ("lr", None, "a finite number >= 0"),
    ("lr", True, "a finite number >= 0"), ("lambda_L1", "100", "a finite number >= 0"),
    ("beta1", "0.5", "in [0, 1)"), ("lr", -1e-4, "a finite number >= 0"),
    ("lambda_L1", -1.0, "a finite number >= 0")])
def test_an_option_that_is_no_number_is_a_value_error_naming_it(option, value, expected):
    """A string from a config file or a widget, or None, was a TypeError from the comparison
    inside the check ("'<=' not supported between instances of 'int' and 'str'"), naming
    nothing; set_lr takes what the constructor's lr takes (QA notebook 2). A negative number
    is refused as well (the mutation audit: a check without its lower bound survived)."""
    message = f"{option} must be {expected}, got {value!r}"
    with pytest.raises(ValueError) as refused:
        Pix2PixEngine(*tiny_networks(), **{option: value})
    assert str(refused.value) == message
    if option == "lr":
        with pytest.raises(ValueError) as refused:
            Pix2PixEngine(*tiny_networks()).set_lr(value)
        assert str(refused.value) == message


@pytest.mark.parametrize("option, value", [
    ("lr", torch.tensor(2e-4)), ("lambda_L1", torch.tensor([100.0])),
    ("beta1", torch.tensor(0.5, dtype=torch.float64))])
def test_a_one_value_tensor_is_taken_as_its_number(option, value):
    """As before the checks refused what is no number: a one-value tensor is its float() (it
    was a ValueError, 'must be a finite number >= 0, got tensor(0.0002)')."""
    engine = Pix2PixEngine(*tiny_networks(), **{option: value})
    if option == "lr":
        engine.set_lr(torch.tensor(1e-4))
        assert engine.lr == pytest.approx(1e-4)
    engine.step(*random_batches(1)[0])
    assert engine.steps == 1


@pytest.mark.parametrize("option, value, expected", [
    ("lr", torch.tensor([2e-4, 1e-4]), "a finite number >= 0"),
    ("lr", torch.tensor(True), "a finite number >= 0"),
    ("lambda_L1", torch.tensor(float("nan")), "a finite number >= 0"),
    ("beta1", torch.tensor(1.0), "in [0, 1)")])
def test_a_tensor_of_no_allowed_number_is_still_refused(option, value, expected):
    with pytest.raises(ValueError) as refused:
        Pix2PixEngine(*tiny_networks(), **{option: value})
    assert str(refused.value) == f"{option} must be {expected}, got {value!r}"


def test_zero_is_taken_where_the_range_begins_at_it():
    """lr, beta1 and lambda_L1 of 0, as --lr, --beta1 and --lambda_L1 take them."""
    engine = Pix2PixEngine(*tiny_networks(), lr=0.0, beta1=0.0, lambda_L1=0.0)
    engine.set_lr(0)
    engine.step(*random_batches(1)[0])
    assert engine.steps == 1
