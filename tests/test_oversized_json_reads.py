"""Files fastp2p reads with a bound on their size: a checkpoint manifest (under 1 KiB as
fastp2p writes it), the remembered CPU forms, a run's train_opt.txt, a synthetic set's record
and the choice tables. They were read whole: a sparse 3 GB
``7_checkpoint.json`` took 3.5 GB of memory, then a MemoryError traceback. A file past the
bound (here valid JSON padded with spaces, which was read and used) is now refused unread: a
manifest, an options file or a choice table as unreadable, in one line; the forms file and a
synthetic set's record read as none."""
import json
import re

import pytest

from fastp2p.cli import build_parser
from fastp2p.data import synthetic
from fastp2p.nn.checkpoint_sets import MANIFEST_FORMAT, read_manifest
from fastp2p.ops import remembered_forms
from fastp2p.ops.backends import cuda_choice
from fastp2p.ops.remembered_forms import RememberedForms
from fastp2p.train import train_command
from fastp2p.train.saved_options import saved_options_note

# past each bound (MAX_MANIFEST_BYTES, 1 MiB; MAX_FILE_BYTES, 16 MiB), far past any real file
MANIFEST_BYTES, FORMS_BYTES = 2 << 20, 32 << 20


def _padded(path, content: dict, size: int):
    path.write_text(json.dumps(content) + " " * size)


def test_an_oversized_manifest_is_unreadable_in_one_line(tmp_path):
    path = tmp_path / "7_checkpoint.json"
    _padded(path, {"format": MANIFEST_FORMAT, "generation": 1, "step": 0, "files": {}},
            MANIFEST_BYTES)
    # the path as it is (a temporary folder may hold a space)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: unreadable checkpoint "
                                         r"manifest \(.* bytes, more than the .*\); resume"
                                         r"[^\n]*$"):
        read_manifest(path, "resume another")


def test_an_oversized_forms_file_reads_as_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    sections = {remembered_forms.machine(): {repr(("key",)): "onednn"}}
    _padded(tmp_path / remembered_forms.FILE_NAME,
            {"format": remembered_forms._FORMAT, "machines": sections}, FORMS_BYTES)
    assert RememberedForms().get(("key",)) is None


def test_an_oversized_options_file_is_unreadable_in_one_line(tmp_path):
    """It was read whole: a sparse 3 GB train_opt.txt, a MemoryError traceback."""
    path = tmp_path / "train_opt.txt"
    path.write_text("ngf: 8\n" + " " * MANIFEST_BYTES)
    args = build_parser().parse_args(["train"])
    taken, line = saved_options_note(args, train_command.register, frozenset(), path)
    assert taken is None
    assert line.startswith(f"{path} cannot be read ({path} is {path.stat().st_size} bytes, "
                           "more than the "), line


def test_an_oversized_synthetic_record_reads_as_none(tmp_path):
    record = tmp_path / "record.json"
    _padded(record, {"seed": 0, "size": 32, "quality": 90, "pairs": 2}, MANIFEST_BYTES)
    assert synthetic._recorded_set(record, tmp_path) is None


def test_an_oversized_choice_table_is_refused_in_one_line(tmp_path):
    table = tmp_path / "table.json"
    _padded(table, {"device": "cpu", "cpp": []}, FORMS_BYTES)
    with pytest.raises(ValueError, match=f"^{table} is not a readable backend choice table"):
        cuda_choice.cpp_shapes(table)
