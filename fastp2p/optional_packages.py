"""The optional packages a command needs (setup.py's extras), checked before it does any work.

``pip install fastp2p`` installs torch and numpy alone, enough for ``fastp2p.UNet``,
``fastp2p info``, ``fastp2p bench``'s step and inference sections and every ``--help``. The
commands that read or write images need Pillow (and tqdm for their progress bars): a missing one
is a one-line error naming the extra that installs it, as a missing tracker package is, never
an ImportError traceback from deep inside the data code. One that is installed but fails to
import (a dependency of its own missing, a broken extension) is said so, with its error; one
that a memory limit keeps from loading (numpy's libraries under matplotlib) is no broken
install: its ImportError goes on to the command line's one line (``fastp2p.cli``).
"""
import importlib

from fastp2p.import_memory import out_of_memory

# import name -> the name pip knows it by
PIP_NAMES = {"PIL": "Pillow", "tqdm": "tqdm", "skimage": "scikit-image",
             "matplotlib": "matplotlib"}


class MissingPackage(ValueError):
    """A command needs an optional package that is not installed, or fails to import."""


def require_packages(modules, extra: str, needed_by: str | None = None) -> None:
    """Raise MissingPackage naming ``extra`` unless every module in ``modules`` imports.
    ``needed_by`` starts the message ("fastp2p bench --sections end-to-end needs tqdm: ...");
    without it the message is for a command's own error line, which names the command
    already ("fastp2p pack: error: tqdm is not installed: ..."). A module that is installed
    but fails to import is named with its error, unless that error is a module found missing
    here (matplotlib without Pillow): installing the extra mends both."""
    missing, broken = [], {}
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            if out_of_memory(error) is not None:
                raise   # no broken install: fastp2p.cli says what limit to raise
            if isinstance(error, ModuleNotFoundError) and error.name == module:
                missing.append(module)
            else:
                broken[module] = error
    problems = [_reinstall_line(module, error, needed_by) for module, error in broken.items()
                if getattr(error, "name", None) not in missing]
    if missing:
        problems.insert(0, _install_line(missing, extra, needed_by))
    if problems:
        raise MissingPackage("; ".join(problems))


def _install_line(missing, extra: str, needed_by: str | None) -> str:
    """The modules ``missing`` (not installed), named by pip, and the extra that installs them."""
    names = [PIP_NAMES.get(module, module) for module in missing]
    named = " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))
    what = (f"{needed_by} needs {named}" if needed_by
            else f"{named} {'is' if len(names) == 1 else 'are'} not installed")
    return f"{what}: pip install 'fastp2p[{extra}]'"


def _reinstall_line(module: str, error: ImportError, needed_by: str | None) -> str:
    """``module``, installed but failing with ``error``: what failed, on one line, and the
    install that mends it (installing the extra says 'already satisfied')."""
    name = PIP_NAMES.get(module, module)
    what = f"{needed_by} needs {name}, which is" if needed_by else f"{name} is"
    reason = " ".join(str(error).split())
    return f"{what} installed but cannot be imported ({reason}): {_mend(module, error)}"


def _mend(module: str, error: ImportError) -> str:
    """The pip command that mends ``module``'s ``error``: installing ``module`` again where it
    found another module missing (matplotlib without kiwisolver), which adds its missing
    requirements and leaves the others as they are (a module's own name is not always pip's:
    dateutil is python-dateutil); else reinstalling ``module`` alone (a broken file of its
    own), --no-deps, as reinstalling its dependencies too would replace numpy, say, with the
    newest one, maybe not the one torch was built against."""
    missing = (getattr(error, "name", None) or "").split(".")[0]
    name = PIP_NAMES.get(module, module)
    if isinstance(error, ModuleNotFoundError) and missing and missing != module:
        return f"pip install {name}, which adds its missing {missing}"
    return f"pip install --force-reinstall --no-deps {name}"
