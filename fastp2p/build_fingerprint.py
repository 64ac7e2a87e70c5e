"""A fingerprint of the installed fastp2p's own files, which tells builds apart where the version
number cannot (it stays the same from commit to commit): ``fastp2p --version`` and ``fastp2p
info`` show it, for a bug report to name the build, and the CPU forms remembered between
processes (fastp2p.ops.remembered_forms) are kept under it, so that a fastp2p whose code
changed measures them afresh."""
import functools
import hashlib
import os
from importlib import metadata
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec
from pathlib import Path

# The files that make the package's behaviour: its modules, its compiled extension (fastp2p._C)
# and its data files (the measured choice tables); not __pycache__'s, made from the modules.
_SUFFIXES = (".py", ".json", *EXTENSION_SUFFIXES)
# fastp2p.kernels is installed inside fastp2p, but in a source tree (an editable install) it
# is kernels/ beside it: named by where it is installed, both hash the same names.
_PACKAGES = ("fastp2p", "fastp2p.kernels")


@functools.cache
def build_fingerprint() -> str:
    """The first 12 hex digits of the SHA-256 of the package's files (``_SUFFIXES``), each with
    its name as installed, in name order: about 4 MB, read once per process; "unknown" where
    one cannot be read. Never raises: the CPU forms' cache key, made in a network's forward,
    holds it."""
    digest = hashlib.sha256()
    try:
        for name, file in sorted(_package_files().items()):
            # a name is any bytes but / and NUL: one that is not UTF-8 hashes as its own bytes
            digest.update(os.fsencode(f"{name}\0{file.stat().st_size}\0"))
            digest.update(file.read_bytes())
    except (OSError, ValueError):
        return "unknown"
    return digest.hexdigest()[:12]


def version_line() -> str:
    """``fastp2p VERSION (build FINGERPRINT)``: the installed distribution's version (this
    module is below the package's __init__, which imports every layer)."""
    try:
        version = metadata.version("fastp2p")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return f"fastp2p {version} (build {build_fingerprint()})"


def _package_files() -> dict:
    """{name as installed (``fastp2p/ops/adam.py``): its path} of ``_PACKAGES``' files."""
    files = {}
    for package in _PACKAGES:
        spec = find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            prefix = Path(*package.split("."))
            for file in Path(folder).rglob("*"):
                inside = file.relative_to(folder)
                if (file.name.endswith(_SUFFIXES) and "__pycache__" not in inside.parts
                        and file.is_file()):
                    files[(prefix / inside).as_posix()] = file
    return files
