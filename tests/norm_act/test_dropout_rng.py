"""The dropout hash has one Python copy (fastp2p.kernels.dropout_rng.mix32); the kernels' copies
(Triton's ``_mix32``, C++/CUDA's ``mix32`` in csrc/common/dropout_rng.h) must drop exactly the
elements it says, on every backend."""
import pytest
import torch

from fastp2p.kernels.dropout_rng import LOW32, dropout_threshold, mix32
from fastp2p.ops import norm_act
from helpers.forced_backend import force_backend


def _python_keep(shape, p, seed, offset):
    """The keep decision of each element, from the Python hash on Python ints."""
    numel = 1
    for size in shape:
        numel *= size
    start = mix32(seed & LOW32)
    keep = [mix32((start + offset + i) & LOW32) >= dropout_threshold(p) for i in range(numel)]
    return torch.tensor(keep).reshape(shape)


def test_one_function_for_ints_and_int64_tensors():
    values = [0, 1, 7, 0x7FEB352D, 2 ** 31, LOW32]
    as_tensor = mix32(torch.tensor(values, dtype=torch.int64))
    assert as_tensor.tolist() == [mix32(v) for v in values]
    assert all(0 <= v <= LOW32 for v in as_tensor.tolist())


@pytest.mark.parametrize("seed,offset", [(1234, 99), (2 ** 40 + 5, 2 ** 33 - 7)])
def test_every_backend_drops_what_the_python_hash_says(backend, seed, offset):
    """Ones through norm='none', no activation: an element is non-zero exactly when kept."""
    shape = (2, 3, 4, 5)
    out = norm_act(torch.ones(shape), norm="none", activation="none", dropout_p=0.5, seed=seed,
                   offset=offset)
    assert torch.equal(out != 0, _python_keep(shape, 0.5, seed, offset))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["triton", "cpp"])
def test_gpu_kernels_drop_what_the_python_hash_says(monkeypatch, name):
    from fastp2p.ops.backends import cpp
    if name == "cpp" and not cpp.cuda_available():
        pytest.skip(cpp.cuda_unavailable_reason())
    force_backend(monkeypatch, name)
    shape = (2, 3, 4, 5)
    out = norm_act(torch.ones(shape, device="cuda"), norm="none", activation="none",
                   dropout_p=0.5, seed=1234, offset=99)
    assert torch.equal((out != 0).cpu(), _python_keep(shape, 0.5, 1234, 99))
