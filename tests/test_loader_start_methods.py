"""The item loader's workers under every way Python starts a process: torch's DataLoader takes
Python's default, which is fork on Linux up to Python 3.13, forkserver on Linux from Python 3.14,
and spawn on macOS and Windows. Under forkserver and spawn each worker gets the dataset pickled,
not copied by fork, so a dataset that does not pickle (an open file, a lock, a lambda) or that
loses state on the way fails there only. The batches must be the same under all three, for image
folders and for a pack."""
import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data_helpers import data_args
from fastp2p.data import create_dataloader, create_dataset
from fastp2p.data.pack import pack_phase

# those this platform offers (Windows: spawn alone); the first one's batches are what the
# others must equal
START_METHODS = tuple(method for method in ("fork", "forkserver", "spawn")
                      if method in multiprocessing.get_all_start_methods())
OPTIONS = ("--load_size", "12", "--crop_size", "9")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Random A|B images of differing heights, as image folders and packed (2 pairs a shard)."""
    root = tmp_path_factory.mktemp("start_methods")
    rng = np.random.default_rng(11)
    for i in range(6):
        path = root / "folders" / "train" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12 + i, 26, 3), dtype=np.uint8)).save(path)
    pack_phase(root / "folders", root / "packed", "train", load_size=12, pairs_per_shard=2,
               progress=False)
    return root


@pytest.fixture
def default_start_method():
    """Sets Python's default start method for the test, and puts back what it was."""
    previous = multiprocessing.get_start_method(allow_none=True)
    yield lambda method: multiprocessing.set_start_method(method, force=True)
    multiprocessing.set_start_method(previous, force=True)


def _two_epochs(dataset):
    loader = create_dataloader(dataset, 2, shuffle=True, num_workers=2, seed=7)
    batches = []
    try:
        for epoch in (1, 2):
            loader.set_epoch(epoch)
            batches += list(loader)
    finally:
        loader.close()  # its workers persist: ended here, not left to the next start method's
    return batches


@pytest.mark.parametrize("kind", ["folders", "packed"])
def test_batches_are_the_same_under_fork_forkserver_and_spawn(roots, kind,
                                                               default_start_method):
    dataset = create_dataset(data_args(roots / kind, *OPTIONS), "train")
    seen = {}
    for method in START_METHODS:
        default_start_method(method)
        seen[method] = _two_epochs(dataset)
    first = seen[START_METHODS[0]]
    assert len(first) == 6 and first[0]["A"].shape == (2, 3, 9, 9)
    assert not torch.equal(first[0]["A"], first[3]["A"])     # batches differ: random pixels
    for method in START_METHODS[1:]:
        assert len(seen[method]) == len(first), method
        for ours, theirs in zip(seen[method], first):
            assert ours["A_paths"] == theirs["A_paths"], method
            assert torch.equal(ours["A"], theirs["A"]) and torch.equal(ours["B"], theirs["B"]), \
                method
