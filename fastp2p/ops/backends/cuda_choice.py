"""Which norm-act kernel runs a CUDA tensor: Triton, or the CUDA C++ one where a benchmark on the
GPU found it faster for that exact shape.

The choice is data, not a guess: ``cuda_norm_act_choice.json`` beside this file, written by
``benchmarks/cuda_choice_table.py`` from the micro-benchmark rows of a GPU run
(``benchmarks/gpu_check.sh`` leaves it with the results) and committed with them. It lists the
(norm, dtype, N, C, H, W) for which the C++ kernel's forward + backward beat Triton's on the GPU
model its "device" names (other GPUs run Triton: choice_tables, the reader of both tables). Without
the file, or without a CUDA build of fastp2p._C, every CUDA call runs Triton — and no table is
committed yet, so the CUDA C++ norm-act kernels are dormant by default.
"""
from functools import lru_cache
from pathlib import Path

from fastp2p.ops.backends.choice_tables import device_name, read_table

TABLE = Path(__file__).with_name("cuda_norm_act_choice.json")


def table_key(norm: str, dtype, shape) -> tuple:
    """The lookup key of one call: the norm, the storage dtype's name and the (N, C, H, W) shape."""
    return (norm, str(dtype).replace("torch.", ""), *(int(s) for s in shape))


@lru_cache(maxsize=None)
def cpp_shapes(path: Path = TABLE) -> frozenset:
    """The (device, table_key) pairs the table gives to the CUDA C++ kernel (empty without a
    table; choice_tables.read_table, the one reader of both choice tables)."""
    return read_table(path, kind="backend choice table", keys=_cpp_keys,
                      remedy="rebuild it with benchmarks/cuda_choice_table.py")


def _cpp_keys(device: str, table: dict):
    return ((device, table_key(entry["norm"], entry["dtype"], entry["shape"]))
            for entry in table["cpp"])


def prefers_cpp(norm: str, x) -> bool:
    """Whether the table gives this call (x, the conv output) to the CUDA C++ kernel: x's
    shape listed for the GPU model x is on (DESIGN §6: a shape or device missing from the
    table runs the established path, Triton)."""
    shapes = cpp_shapes()
    return bool(shapes) and (device_name(x.device), table_key(norm, x.dtype, x.shape)) in shapes
