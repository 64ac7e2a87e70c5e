"""torch's warning that the loader's workers outnumber the cores ("excessive worker creation might
get DataLoader running slow or even freeze"): --num_threads takes up to 4 workers on fewer cores
(the reference's default), and such a run printed the warning twice, from the DataLoader's
constructor and again from the loader's own _get_iterator. Now none for a count --num_threads
takes, once past it (a caller of PairLoader itself)."""
import warnings

import pytest
import torch

from fastp2p import cpu_info
from fastp2p.data.loader import PairLoader

EXCESSIVE = "excessive worker creation"


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"A": torch.rand(3, 8, 8), "B": torch.rand(3, 8, 8)}


def _warnings_of_one_batch(workers: int) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = PairLoader(Items(), 2, shuffle=False, num_workers=workers, seed=0)
        try:
            batch = next(iter(loader))
        finally:
            loader.close()
    assert batch["A"].shape == (2, 3, 8, 8)
    return [str(warning.message) for warning in caught if EXCESSIVE in str(warning.message)]


@pytest.mark.parametrize("workers, expected", [(2, 0), (3, 1)], ids=["taken", "past-the-bound"])
def test_the_worker_count_warning_is_said_at_most_once(monkeypatch, workers, expected):
    """On 1 core (torch counts the same) --num_threads takes up to 2 here: no warning for 2,
    torch's own once for 3."""
    monkeypatch.setattr(cpu_info, "usable_cpus", lambda: 1)
    monkeypatch.setattr(cpu_info, "MAX_WORKERS", 2)   # 2 workers start faster than 4
    monkeypatch.setattr(torch._utils, "cpu_count", lambda: 1)
    assert len(_warnings_of_one_batch(workers)) == expected
