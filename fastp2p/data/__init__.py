"""Paired image data for pix2pix: folders, packed shards, the embedded default, loaders.

The interface the training code uses:
``add_data_arguments(parser)``, ``create_dataset(args, phase)``,
``create_dataloader(dataset, batch_size, *, shuffle, num_workers, seed, ...)``,
``default_dataroot()``, and ``DataError``, which they raise for a dataset problem the user
has to fix (one line naming the file).

The names are imported on first use (PEP 562): the commands' parsers need only the options,
and ``fastp2p --help`` or ``fastp2p info`` must work without Pillow (an optional dependency,
the ``data`` extra), which the datasets import.
"""
import importlib

_HOMES = {
    "DataError": "fastp2p.data.errors",
    "add_data_arguments": "fastp2p.data.options",
    "create_dataloader": "fastp2p.data.loader",
    "create_dataset": "fastp2p.data.create",
    "default_dataroot": "fastp2p.data.default_dataset",
}

__all__ = sorted(_HOMES)


def _naming_the_extra(error: ModuleNotFoundError, wanted: str) -> ModuleNotFoundError:
    """``error`` (an optional package missing) as one line naming the extra that installs it,
    as the commands say it (fastp2p.optional_packages); any other missing module as it is."""
    from fastp2p.optional_packages import PIP_NAMES

    package = (error.name or "").partition(".")[0]
    if package not in PIP_NAMES:
        return error
    return ModuleNotFoundError(f"{wanted} needs {PIP_NAMES[package]}: "
                               "pip install 'fastp2p[data]'", name=error.name)


def __getattr__(name):
    # A name of the interface, or a submodule (``fastp2p.data.loader``) as an eager __init__
    # would have imported it.
    if name not in _HOMES and not name.isidentifier():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = _HOMES.get(name, f"{__name__}.{name}")
    try:
        module = importlib.import_module(home)
    except ModuleNotFoundError as error:
        if error.name == home:  # no such submodule
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        raise _naming_the_extra(error, f"{__name__}.{name}") from error
    return getattr(module, name) if name in _HOMES else module
