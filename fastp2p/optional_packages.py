"""The optional packages a command needs (setup.py's extras), checked before it does any work.

``pip install fastp2p`` installs torch and numpy alone, enough for ``fastp2p.UNet``,
``fastp2p info``, ``fastp2p bench``'s step and inference sections and every ``--help``. The
commands that read or write images need Pillow (and tqdm for their progress bars): a missing one
is a one-line error naming the extra that installs it, as a missing tracker package is, never
an ImportError traceback from deep inside the data code.
"""
import importlib

# import name -> the name pip knows it by
PIP_NAMES = {"PIL": "Pillow", "tqdm": "tqdm", "skimage": "scikit-image",
             "matplotlib": "matplotlib"}


class MissingPackage(ValueError):
    """A command needs an optional package that is not installed."""


def require_packages(modules, extra: str, needed_by: str | None = None) -> None:
    """Raise MissingPackage naming ``extra`` unless every module in ``modules`` imports.
    ``needed_by`` starts the message ("fastp2p bench --sections end-to-end needs tqdm: ...");
    without it the message is for a command's own error line, which names the command
    already ("fastp2p pack: error: tqdm is not installed: ...")."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(PIP_NAMES.get(module, module))
    if missing:
        named = " and ".join(filter(None, (", ".join(missing[:-1]), missing[-1])))
        what = (f"{needed_by} needs {named}" if needed_by
                else f"{named} {'is' if len(missing) == 1 else 'are'} not installed")
        raise MissingPackage(f"{what}: pip install 'fastp2p[{extra}]'")
