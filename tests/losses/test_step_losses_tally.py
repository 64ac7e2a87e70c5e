"""The fused step-loss ops' bookkeeping (LossTally): each op adds its two loss parts to the
device loss sums, the G op advances the step counter, and the first step with a NaN or Inf
part is recorded once and kept — the engine's stack / add / isfinite launches, done by the
ops' finishing launch (Triton, interpreted on CPU) or by device ops (reference backend)."""
import pytest
import torch

from fastp2p.ops.step_losses import LossTally, d_step_losses_and_grads, g_step_losses_and_grads
from helpers.triton_interpreter import CPU_BACKEND_PARAMS

BACKENDS = [p for p in CPU_BACKEND_PARAMS if getattr(p, "values", (p,))[0] != "cpp"]
LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")  # the engine's order


def _tallies():
    sums = torch.full((4,), 0.25)  # nonzero: the ops add to what is there
    step, first = torch.tensor(7), torch.tensor(0)
    d = LossTally(sums, (3, 2), step, first, advance_step=False)
    g = LossTally(sums, (0, 1), step, first, advance_step=True)
    return d, g


def _step_inputs(seed, nan_in=None):
    gen = torch.Generator().manual_seed(seed)
    inputs = {"fake_logits": torch.randn(2, 1, 3, 3, generator=gen),
              "real_logits": torch.randn(2, 1, 3, 3, generator=gen),
              "g_logits": torch.randn(2, 1, 3, 3, generator=gen),
              "fake_b": torch.rand(2, 3, 4, 4, generator=gen),
              "real_b": torch.rand(2, 3, 4, 4, generator=gen)}
    if nan_in is not None:
        inputs[nan_in].view(-1)[5] = float("nan")
    return inputs


def _run_step(inputs, d_tally, g_tally, mode="vanilla"):
    """One step's two ops with the tallies; returns [G_GAN, G_L1, D_real, D_fake]."""
    d_losses = d_step_losses_and_grads(inputs["fake_logits"], inputs["real_logits"], mode,
                                       tally=d_tally)[0]
    g_losses = g_step_losses_and_grads(inputs["g_logits"], inputs["fake_b"], inputs["real_b"],
                                       mode, 100.0, tally=g_tally)[0]
    return [g_losses[1], g_losses[2], d_losses[2], d_losses[1]]


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_losses_are_added_to_the_sums_and_the_g_op_ends_the_step(backend, mode):
    d_tally, g_tally = _tallies()
    expected = torch.full((4,), 0.25)
    for seed in (1, 2):
        parts = _run_step(_step_inputs(seed), d_tally, g_tally, mode)
        expected += torch.stack(parts)
    assert torch.equal(d_tally.loss_sums, expected)  # float32 adds in the same order
    assert d_tally.device_step.item() == 9  # +1 per step, from the G op only
    assert d_tally.first_nonfinite_step.item() == 0


@pytest.mark.parametrize("nan_in,first_bad", [
    ("fake_logits", 8), ("real_logits", 8), ("g_logits", 8), ("fake_b", 8), ("real_b", 8)])
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_first_nonfinite_step_is_recorded_once(backend, nan_in, first_bad):
    """Step 8 (the counter starts at 7) has a NaN in one input: it is recorded; a later
    non-finite step does not overwrite it, and the step counter keeps counting."""
    d_tally, g_tally = _tallies()
    _run_step(_step_inputs(1, nan_in=nan_in), d_tally, g_tally)
    assert d_tally.first_nonfinite_step.item() == first_bad
    assert d_tally.device_step.item() == 8
    _run_step(_step_inputs(2), d_tally, g_tally)
    _run_step(_step_inputs(3, nan_in="fake_b"), d_tally, g_tally)
    assert d_tally.first_nonfinite_step.item() == first_bad
    assert d_tally.device_step.item() == 10


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_an_infinite_loss_counts_as_nonfinite(backend):
    d_tally, g_tally = _tallies()
    _run_step(_step_inputs(1), d_tally, g_tally)
    inputs = _step_inputs(2)
    inputs["real_b"].view(-1)[0] = float("inf")  # L1 = inf, a finite gradient
    _run_step(inputs, d_tally, g_tally)
    assert torch.isinf(d_tally.loss_sums[LOSS_NAMES.index("G_L1")])
    assert d_tally.first_nonfinite_step.item() == 9


@pytest.mark.parametrize("tally,message", [
    (LossTally(torch.zeros(4, dtype=torch.float64), (0, 1), torch.tensor(0), torch.tensor(0),
               False), "contiguous 1-d float32"),
    (LossTally(torch.zeros(4), (0, 4), torch.tensor(0), torch.tensor(0), False),
     "two different indices"),
    (LossTally(torch.zeros(4), (1, 1), torch.tensor(0), torch.tensor(0), False),
     "two different indices"),
    (LossTally(torch.zeros(4), (0, 1), torch.tensor(0.0), torch.tensor(0), False),
     "device_step must be a 0-dim int64"),
    (LossTally(torch.zeros(4), (0, 1), torch.tensor(0), torch.tensor([0]), False),
     "first_nonfinite_step must be a 0-dim int64"),
], ids=["sums-dtype", "position-range", "same-position", "step-dtype", "first-shape"])
def test_a_bad_tally_raises_value_error(tally, message):
    with pytest.raises(ValueError, match=message):
        d_step_losses_and_grads(torch.rand(2), torch.rand(2), "lsgan", tally=tally)
