"""Every interpreter test skips where helpers.triton_interpreter.KERNELS is None, as it is
without triton or on a GPU machine. Anywhere else KERNELS must be the interpreted backend: a
Triton backend that wrongly reported its kernels as not interpreted (INTERPRETED) turned every
interpreter test into a skip saying triton was missing, and the run still passed."""
import importlib.util
import os

import pytest
import torch

from helpers.triton_interpreter import KERNELS


def test_the_interpreted_kernels_are_there_for_the_interpreter_tests():
    # asked here, not in a skipif: nothing in tests/ calls torch.cuda at import (test_cuda_marks)
    if (importlib.util.find_spec("triton") is None or torch.cuda.is_available()
            or os.environ.get("TRITON_INTERPRET", "1") in ("", "0")):
        pytest.skip("no triton, a GPU, or TRITON_INTERPRET switched off: no kernels to run")
    assert KERNELS is not None, "triton is installed and there is no GPU, yet KERNELS is None"
    assert KERNELS.INTERPRETED
