"""Import a script of benchmarks/ as the GPU check runs it: with benchmarks/ on the path, so
its own imports of its neighbours (``from kernel_timing import ...``) resolve."""
import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark_script(name: str):
    """The module benchmarks/<name>.py (imported once; later calls return it)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
