"""What a Python user of Pix2PixEngine reads when a call cannot run (QA r40): every CUDA-only
setting named in one round on a CPU, an integer batch named by its dtype, and no NaN losses
from a read with no step since the last."""
import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks


def test_the_readme_cuda_settings_on_a_cpu_are_named_together():
    """README's engine snippet (bf16, CUDA graph) on a CPU: both fixes in the first error."""
    with pytest.raises(ValueError, match=r"^precision='bf16' and cuda_graph=True need the "
                                         r"networks on a CUDA device, they are on cpu; use "
                                         r"precision='fp32' and cuda_graph=False$"):
        Pix2PixEngine(*tiny_networks(), precision="bf16", channels_last=True, cuda_graph=True)


def test_one_cuda_setting_on_a_cpu_keeps_its_one_line():
    with pytest.raises(ValueError, match=r"^precision='bf16' needs the networks on a CUDA "
                                         r"device, they are on cpu; use precision='fp32'$"):
        Pix2PixEngine(*tiny_networks(), precision="bf16")


def test_an_integer_batch_is_named_by_its_dtype():
    engine = Pix2PixEngine(*tiny_networks())
    real_A, real_B = random_batches(1)[0]
    with pytest.raises(ValueError, match=r"^real_A must be a floating-point tensor, got "
                                         r"torch.int64; convert it with .float\(\)"):
        engine.step(real_A.long(), real_B)


def test_a_read_with_no_step_since_the_last_is_empty_not_nan():
    engine = Pix2PixEngine(*tiny_networks())
    assert engine.read_losses() == {}
    real_A, real_B = random_batches(1)[0]
    engine.step(real_A, real_B)
    assert set(engine.read_losses()) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert engine.read_losses() == {}
