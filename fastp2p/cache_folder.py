"""fastp2p's cache folder, for what is worth keeping between processes but can always be made
again: the embedded default dataset (fastp2p.data.default_dataset) and the CPU transposed
convolutions' measured forms (fastp2p.ops.remembered_forms)."""
import os
from pathlib import Path


class NoCacheFolder(OSError):
    """Neither $FASTP2P_CACHE nor a home folder (a container without HOME and without a passwd
    entry for its user): an OSError, as a folder that cannot be written."""


def cache_root() -> Path:
    """$FASTP2P_CACHE, else ~/.cache/fastp2p; NoCacheFolder where neither can be found, or
    FASTP2P_CACHE is blanks only or names a file (``_given_folder``)."""
    folder = os.environ.get("FASTP2P_CACHE")
    if folder:
        return _given_folder(folder)
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as error:  # Python >= 3.12: RuntimeError; older: pwd's
        raise NoCacheFolder(f"no folder for fastp2p's cache: FASTP2P_CACHE is not set and the "
                            f"home folder is unknown ({error}); set FASTP2P_CACHE to a writable "
                            "folder") from None
    return home / ".cache" / "fastp2p"


def _given_folder(value: str) -> Path:
    """FASTP2P_CACHE's ``value`` as a folder; NoCacheFolder naming the variable where it is
    blanks only or has blanks at its ends (a folder named " " was made in the current folder:
    " /tmp/cache" is relative, a typo in a job script) or it, or a folder above it, is a file
    (the cache folder could not be made: "[Errno 17] File exists")."""
    if value != value.strip():
        blanks = "blanks only" if not value.strip() else "with blanks at its ends"
        raise NoCacheFolder(f"FASTP2P_CACHE is {value!r}, {blanks}: set it to a folder, or "
                            "unset it for ~/.cache/fastp2p")
    folder = Path(value)
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            return folder
        if os.path.lexists(candidate):
            raise NoCacheFolder(f"FASTP2P_CACHE={value}: {candidate} is no folder; "
                                "set FASTP2P_CACHE to a folder, or move the file away")
    return folder
