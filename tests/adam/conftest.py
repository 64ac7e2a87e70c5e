"""The tests of this folder prove the Triton Adam kernel (kernels/adam.py), interpreted on CPU
tensors: the suite forces the reference backend elsewhere (helpers.triton_interpreter), which
would run the Adam op's plain-PyTorch launcher instead, so here only that op is routed to the
Triton backend; the networks of the engine tests keep the reference backend (interpreting them
too would make those tests slow). Without the interpreter (no triton, or a GPU) nothing
changes: a GPU's registry runs the kernel anyway."""
import pytest

import fastp2p.ops.adam
from helpers.triton_interpreter import KERNELS


@pytest.fixture(autouse=True)
def adam_op_in_the_triton_kernel(monkeypatch):
    if KERNELS is not None:
        monkeypatch.setattr(fastp2p.ops.adam, "backend_for", lambda *args: KERNELS)
