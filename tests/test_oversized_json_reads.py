"""JSON files fastp2p reads with a bound on their size: a checkpoint manifest (under 1 KiB as
fastp2p writes it) and the remembered CPU forms. Both were read whole: a sparse 3 GB
``7_checkpoint.json`` took 3.5 GB of memory, then a MemoryError traceback. A file past the
bound (here valid JSON padded with spaces, which was read and used) is now refused unread: a
manifest as unreadable, in one line; the forms file reads as empty (timing again)."""
import json

import pytest

from fastp2p.nn.checkpoint_sets import MANIFEST_FORMAT, read_manifest
from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms

# past each bound (MAX_MANIFEST_BYTES, 1 MiB; MAX_FILE_BYTES, 16 MiB), far past any real file
MANIFEST_BYTES, FORMS_BYTES = 2 << 20, 32 << 20


def _padded(path, content: dict, size: int):
    path.write_text(json.dumps(content) + " " * size)


def test_an_oversized_manifest_is_unreadable_in_one_line(tmp_path):
    path = tmp_path / "7_checkpoint.json"
    _padded(path, {"format": MANIFEST_FORMAT, "generation": 1, "step": 0, "files": {}},
            MANIFEST_BYTES)
    with pytest.raises(ValueError, match=r"^\S+7_checkpoint.json: unreadable checkpoint "
                                         r"manifest \(.* bytes, more than the .*\); resume"
                                         r"[^\n]*$"):
        read_manifest(path, "resume another")


def test_an_oversized_forms_file_reads_as_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    sections = {remembered_forms.machine(): {repr(("key",)): "onednn"}}
    _padded(tmp_path / remembered_forms.FILE_NAME,
            {"format": remembered_forms._FORMAT, "machines": sections}, FORMS_BYTES)
    assert RememberedForms().get(("key",)) is None
