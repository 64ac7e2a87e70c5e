"""PairLoader.close when torch reports a worker's death while it stops them: the report (raised by
torch's SIGCHLD handler wherever the main process is, here inside the stop) is dropped, as a
worker that dies once closing has begun loses nothing used, and torch's own shutdown still
stops the other workers; any other error is raised, after that shutdown too."""
import pytest
import torch

import fastp2p.data.loader as loader_module
from fastp2p.data.loader import PairLoader

# the start of torch's report of a dead worker (torch.utils.data._utils.signal_handling)
DEATH_REPORT = "DataLoader worker (pid(s) 4242) exited unexpectedly"


class _RandomPairs(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return {"A": torch.rand(3, 4, 4, generator=generator),
                "B": torch.rand(3, 4, 4, generator=generator)}


def _started_loader():
    loader = PairLoader(_RandomPairs(), 2, shuffle=False, num_workers=2, seed=0)
    next(iter(loader))
    workers = list(loader._loader._iterator._workers)
    assert all(worker.is_alive() for worker in workers)
    return loader, workers


def _stop_raising(monkeypatch, error):
    """``_stop_workers`` that meets ``error`` as it begins, before stopping anything."""
    def stop(iterator):
        raise error
    monkeypatch.setattr(loader_module, "_stop_workers", stop)


def test_a_death_reported_as_close_begins_is_dropped_and_every_worker_stops(monkeypatch):
    loader, workers = _started_loader()
    _stop_raising(monkeypatch, RuntimeError(DEATH_REPORT))
    loader.close()
    for worker in workers:
        worker.join(timeout=10)
        assert not worker.is_alive()
    assert loader._loader._iterator is None


def test_another_error_in_close_is_raised_after_the_workers_stop(monkeypatch):
    loader, workers = _started_loader()
    _stop_raising(monkeypatch, RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="something else"):
        loader.close()
    for worker in workers:
        worker.join(timeout=10)
        assert not worker.is_alive()
