"""Paired image data for pix2pix: folders, packed shards, the embedded default, loaders.

The interface the training code uses:
``add_data_arguments(parser)``, ``create_dataset(args, phase)``,
``create_dataloader(dataset, batch_size, *, shuffle, num_workers, seed, ...)``,
``default_dataroot()``.

The names are imported on first use (PEP 562): the commands' parsers need only the options,
and ``fastp2p --help`` or ``fastp2p info`` must work without Pillow (an optional dependency,
the ``data`` extra), which the datasets import.
"""
import importlib

_HOMES = {
    "CudaPrefetcher": "fastp2p.data.loader",
    "DataError": "fastp2p.data.errors",
    "add_data_arguments": "fastp2p.data.options",
    "create_dataloader": "fastp2p.data.loader",
    "create_dataset": "fastp2p.data.create",
    "default_dataroot": "fastp2p.data.default_dataset",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    # A submodule (``fastp2p.data.loader``), as an eager __init__ would have imported it.
    if not name.isidentifier():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise  # the submodule exists but needs a missing package (Pillow): say so
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
