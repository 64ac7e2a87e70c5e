"""The Adam step and the pair augmentation are ops of the backend contract: the reference
backend's plain-PyTorch launchers give the Triton launchers' results (through the interpreter),
the train and data layers call the ops (the backend choice is fastp2p/ops/'s alone), and
TRITON_INTERPRET is read in one place."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastp2p.ops import adam, augment
from fastp2p.ops.backends import reference
from helpers.tolerances import assert_close
from helpers.triton_interpreter import KERNELS

CHECKOUT = Path(__file__).resolve().parents[2]
needs_interpreter = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")
ONE_STEP = 1e-6  # relative: the two launchers' float32 orders agree; only pow's ulps differ


def _adam_buffers(copy_dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    numel, copied = 3000, 2000
    master = torch.randn(numel, generator=gen)
    moments = torch.rand(numel, generator=gen) * 1e-3, torch.rand(numel, generator=gen) * 1e-6
    grads = (torch.randn(copied, generator=gen).to(copy_dtype) * 1e-2,
             torch.randn(numel - copied, generator=gen) * 1e-2)
    copy = torch.full((copied,), float("nan"), dtype=copy_dtype)
    return [master, *moments, *grads, copy]


@pytest.mark.interpreter
@needs_interpreter
@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["no-decay", "decay"])
@pytest.mark.parametrize("copy_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_reference_adam_step_matches_the_triton_one(copy_dtype, weight_decay):
    hyper = torch.tensor([0.5, 0.999, 1e-8, weight_decay], dtype=torch.float64)
    results = []
    for launchers in (KERNELS, reference):
        buffers = _adam_buffers(copy_dtype)
        ticket = torch.zeros(1, dtype=torch.int64)
        programs = KERNELS.adam_programs(buffers[0].numel(), buffers[0].device)
        for _ in range(3):  # the step counter: bias corrections of steps 1, 2, 3
            launchers.adam_step(*buffers, torch.tensor(2e-4), ticket, hyper, programs)
        assert ticket.item() == 3 * programs
        results.append(buffers)
    for name, ours, theirs in zip(("master", "exp_avg", "exp_avg_sq"), results[1], results[0]):
        assert_close(ours, theirs, ONE_STEP, name)
    assert torch.equal(results[1][5], results[1][0][:2000].to(copy_dtype))  # rounded master


@pytest.mark.interpreter
@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("swap", [False, True], ids=["AtoB", "BtoA"])
def test_the_reference_augment_matches_the_triton_one(swap, dtype):
    gen = torch.Generator().manual_seed(1)
    pairs = torch.randint(0, 256, (3, 9, 22, 3), dtype=torch.uint8, generator=gen)
    crop_x, crop_y = torch.tensor([0, 2, 4], dtype=torch.int32), torch.tensor([1, 0, 2],
                                                                             dtype=torch.int32)
    flip = torch.tensor([1, 0, 1], dtype=torch.int32)
    kernel = KERNELS.augment_pairs(pairs, crop_x, crop_y, flip, crop_size=7, swap=swap,
                                   dtype=dtype)
    plain = reference.augment_pairs(pairs, crop_x, crop_y, flip, crop_size=7, swap=swap,
                                    dtype=dtype)
    for ours, theirs in zip(plain, kernel):
        assert torch.equal(ours, theirs)


def test_the_ops_check_before_any_backend_runs():
    with pytest.raises(ValueError, match="exp_avg must be a contiguous"):
        adam.adam_step(torch.zeros(4), torch.zeros(3), torch.zeros(4), torch.zeros(0),
                       torch.zeros(4), torch.zeros(0), torch.tensor(0.1),
                       torch.zeros(1, dtype=torch.int64), torch.zeros(4, dtype=torch.float64), 1)
    zeros = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"crop_x must lie in \[0, 2\]"):
        augment.augment_pairs(torch.zeros(2, 6, 12, 3, dtype=torch.uint8),
                              torch.tensor([0, 3], dtype=torch.int32), zeros, zeros, crop_size=4)


def _sources(*folders):
    for folder in folders:
        yield from sorted((CHECKOUT / folder).rglob("*.py"))


def test_train_and_data_call_the_ops_not_the_kernels():
    """The backend choice happens in fastp2p/ops/ alone (STYLE.md): no launcher of kernels/
    imported by the layers above it."""
    launcher_import = re.compile(r"fastp2p\.kernels\.(adam|augment)\b")
    offenders = [str(path.relative_to(CHECKOUT)) for path in _sources("fastp2p/train",
                                                                      "fastp2p/data")
                 if launcher_import.search(path.read_text())]
    assert offenders == []


def test_triton_interpret_is_read_in_one_place():
    """fastp2p.ops.backends.interpreter_on is the only parse of TRITON_INTERPRET (several
    parses, some at import and some per call, disagreed: the registry said interpreted Triton
    while gpu_augment launched the compiled kernel)."""
    read = re.compile(r"(environ\.get|getenv)\(\s*\"TRITON_INTERPRET\"")
    readers = [str(path.relative_to(CHECKOUT)) for path in _sources("fastp2p", "kernels")
               if read.search(path.read_text())]
    assert readers == ["fastp2p/ops/backends/__init__.py"]


REPRO = """
import os, random, torch
import fastp2p.kernels.augment  # built compiled: TRITON_INTERPRET unset
os.environ["TRITON_INTERPRET"] = "1"
from fastp2p.data.gpu_augment import augment_batch
from fastp2p.data.transforms import Preprocess
from fastp2p.ops.backends import backend_name_for
pairs = torch.randint(0, 256, (2, 6, 12, 3), dtype=torch.uint8)
batch = augment_batch(pairs, Preprocess(load_size=6, crop_size=4), [random.Random(0)] * 2)
print(tuple(batch["A"].shape), backend_name_for(torch.device("cpu"), torch.float32))
"""


@pytest.mark.interpreter
def test_kernels_built_compiled_are_not_sent_cpu_tensors_when_the_variable_comes_later(tmp_path):
    """The registry asks the kernels how they were built, not the variable at its own import:
    kernels imported before TRITON_INTERPRET=1 was set keep CPU tensors off Triton."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTP2P_BACKEND")}
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", REPRO], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[0].startswith("(2, 3, 4, 4)")
    assert "triton" not in result.stdout
