"""How the reports' files (sample images, the loss plot, the HTML pages) are written and removed:
a file other people may be reading is replaced atomically; a file is removed only where it is
one (a folder of its name is someone's own), a folder only where it is empty."""
import contextlib
import os
from pathlib import Path

from fastp2p.atomic_files import replacing


def replace_atomically(path: Path, write) -> None:
    """``write(file)`` (a binary file object on a fresh temporary sibling of ``path``), then
    rename over ``path``: viewers never see half a file. Not
    fsynced: these are views of the run, remade at the next refresh. An OSError names
    ``path`` (``replacing``): Pillow's and matplotlib's own writes fail on a full disk naming
    no file."""
    with replacing(path, durable=False) as file:
        write(file)


def unlink_file(path: Path) -> None:
    """Remove ``path`` if it is a file or a symbolic link (a folder of that name is someone's
    own: fastp2p writes none)."""
    if path.is_file() or path.is_symlink():
        path.unlink()


def remove_if_empty(folder: Path) -> None:
    """``folder`` removed unless it holds something (the user's own files stay, in it) or is
    not a folder (a link: the folder it points at is left as it is)."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)
