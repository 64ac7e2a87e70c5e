"""fastp2p.byte_sizes.binary_size: the one formatter of byte counts in error lines (the memory
check of --ngf and pack's disk and memory lines each had their own, one stopping at TiB)."""
import pytest

from fastp2p.byte_sizes import binary_size


@pytest.mark.parametrize("count,words", [
    (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (490_803, "479.3 KiB"),
    (30 * 2 ** 30, "30.0 GiB"), (int(4.5 * 2 ** 40), "4.5 TiB"), (2 ** 55, "32.0 PiB"),
    (2 ** 70, "1024.0 EiB")])
def test_binary_size_takes_the_largest_unit_that_leaves_one(count, words):
    assert binary_size(count) == words
