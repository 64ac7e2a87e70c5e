"""The CPU's model name: benchmark results name it (the same code measured 1.6x the reference on
a Xeon and 1.2x on an EPYC), and measured choices are kept per model
(fastp2p.ops.remembered_forms)."""
import platform
from pathlib import Path


def cpu_model() -> str:
    """The model name as ``lscpu`` prints it (Linux /proc/cpuinfo), else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
