"""checkpoint_names.holds_networks_only: a set is the reference implementation's (networks
without a training state, resumed with fresh optimizers at --epoch_count) only where its
generator is there and neither a training state nor a manifest is: a fastp2p set that lost its
training state (its manifest says so) is a damaged set, refused as one, never resumed afresh.
The check before torch loads and the loader both ask it."""
import pytest

from fastp2p.checkpoint_names import (MANIFEST_SUFFIX, NETWORK_SUFFIXES, TRAIN_STATE_SUFFIX,
                                      holds_networks_only)

G, D = NETWORK_SUFFIXES["G"], NETWORK_SUFFIXES["D"]


@pytest.mark.parametrize("suffixes, networks_only", [
    ((G, D), True),
    ((G,), True),
    ((G, D, TRAIN_STATE_SUFFIX, MANIFEST_SUFFIX), False),   # fastp2p's
    ((G, D, MANIFEST_SUFFIX), False),        # its training state lost
    ((G, D, TRAIN_STATE_SUFFIX), False),     # its manifest lost
    ((D,), False),
    ((), False),
], ids=["reference", "generator alone", "fastp2p", "no training state", "no manifest",
        "no generator", "nothing"])
def test_only_a_generator_without_state_or_manifest_is_networks_only(tmp_path, suffixes,
                                                                     networks_only):
    for suffix in suffixes:
        (tmp_path / f"latest_{suffix}").write_bytes(b"")
    (tmp_path / f"5_{TRAIN_STATE_SUFFIX}").write_bytes(b"")   # another set's: not looked at
    assert holds_networks_only(tmp_path, "latest") is networks_only
