"""fastp2p's cache folder, for what is worth keeping between processes but can always be made
again: the embedded default dataset (fastp2p.data.default_dataset) and the CPU transposed
convolutions' measured forms (fastp2p.ops.remembered_forms)."""
import os
from pathlib import Path


def cache_root() -> Path:
    """$FASTP2P_CACHE, else ~/.cache/fastp2p."""
    return Path(os.environ.get("FASTP2P_CACHE") or Path.home() / ".cache" / "fastp2p")
