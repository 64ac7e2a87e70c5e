"""The tests of this folder share a tiny aligned dataset (4 pairs) and one finished 1-epoch run
trained on it, made once per test module."""
import pytest

from helpers.train_helpers import train_tiny_run, write_aligned_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A checkpoints folder holding one finished 1-epoch run "tiny" (copy it to change it)."""
    return train_tiny_run(data, tmp_path_factory.mktemp("trained"))
