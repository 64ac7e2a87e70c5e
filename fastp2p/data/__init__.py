"""Paired image data for pix2pix: folders, packed shards, the embedded default, loaders.

The interface the training code uses:
``add_data_arguments(parser)``, ``create_dataset(args, phase)``,
``create_dataloader(dataset, batch_size, *, shuffle, num_workers, seed, ...)``,
``default_dataroot()``.
"""
from fastp2p.data.create import create_dataset
from fastp2p.data.default_dataset import default_dataroot
from fastp2p.data.errors import DataError
from fastp2p.data.loader import CudaPrefetcher, create_dataloader
from fastp2p.data.options import add_data_arguments

__all__ = ["CudaPrefetcher", "DataError", "add_data_arguments", "create_dataloader",
           "create_dataset", "default_dataroot"]
