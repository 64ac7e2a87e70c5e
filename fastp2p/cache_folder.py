"""fastp2p's cache folder, for what is worth keeping between processes but can always be made
again: the embedded default dataset (fastp2p.data.default_dataset) and the CPU transposed
convolutions' measured forms (fastp2p.ops.remembered_forms)."""
import os
from pathlib import Path


class NoCacheFolder(OSError):
    """Neither $FASTP2P_CACHE nor a home folder (a container without HOME and without a passwd
    entry for its user): an OSError, as a folder that cannot be written."""


def cache_root() -> Path:
    """$FASTP2P_CACHE, else ~/.cache/fastp2p; NoCacheFolder where neither can be found."""
    folder = os.environ.get("FASTP2P_CACHE")
    if folder:
        return Path(folder)
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as error:  # Python >= 3.12: RuntimeError; older: pwd's
        raise NoCacheFolder(f"no folder for fastp2p's cache: FASTP2P_CACHE is not set and the "
                            f"home folder is unknown ({error}); set FASTP2P_CACHE to a writable "
                            "folder") from None
    return home / ".cache" / "fastp2p"
