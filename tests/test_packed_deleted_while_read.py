"""A pack deleted (or moved) under a PackedDataset that was reading it is reported as deleted,
with what brings it back (move it back or pack it again, then --continue_train), not as a pack
rewritten: starting the training again alone only found no --dataroot folder (QA)."""
import shutil

import pytest

from fastp2p.cli import main
from fastp2p.data import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import make_aligned, tiny_pack_args


@pytest.fixture
def phase(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=4)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    return out / "train"


def _read_all_after(phase, change):
    """Read pair 0 (its shard checked), ``change`` the pack, then read every pair."""
    dataset = PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)
    dataset.close()     # unguarded from here, as a read-only pack is
    dataset.read_raw(0)
    change()
    with pytest.raises(DataError) as caught:
        for index in range(len(dataset)):
            dataset.read_raw(index)
    message = str(caught.value)
    assert "\n" not in message and "rewritten" not in message, message
    assert "fastp2p pack " in message and "--continue_train" in message
    return message


def test_a_pack_folder_deleted_while_read_is_said_to_be_deleted(phase):
    message = _read_all_after(phase, lambda: shutil.rmtree(phase.parent))
    assert message.startswith(f"{phase}: the pack was deleted (or moved) while it was read")


def test_a_pack_folder_moved_while_read_is_said_to_be_moved(phase, tmp_path):
    message = _read_all_after(phase, lambda: phase.parent.rename(tmp_path / "elsewhere"))
    assert message.startswith(f"{phase}: the pack was deleted (or moved) while it was read")
    assert "move it back" in message


@pytest.mark.parametrize("names", [["shard-*.u8"], ["shard-*.u8", "index.json"]])
def test_a_shard_deleted_while_read_is_said_to_be_deleted(phase, names):
    def delete():
        for path in [path for name in names for path in phase.glob(name)]:
            path.unlink()
    message = _read_all_after(phase, delete)
    assert message.startswith(f"{phase}: shard-00000.u8 was deleted (or moved) while it was read")
