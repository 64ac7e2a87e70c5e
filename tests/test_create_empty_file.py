"""atomic_files.create_empty_file: the claim of a name (exclusive) and a mark left (not)."""
import os
import stat

import pytest

from fastp2p.atomic_files import create_empty_file


def test_an_exclusive_claim_refuses_any_name_taken_and_keeps_what_is_there(tmp_path):
    """KeptNumber.move renames the log onto its claim: a claim made over a file someone else
    made there (a check, then a create) had the rename replace that file."""
    taken = tmp_path / "loss_log.1.csv"
    taken.write_text("someone's")
    with pytest.raises(FileExistsError):
        create_empty_file(taken, exclusive=True)
    assert taken.read_text() == "someone's"
    link = tmp_path / "loss_log.2.csv"
    link.symlink_to(tmp_path / "nowhere")   # never followed: its target is not made
    with pytest.raises(FileExistsError):
        create_empty_file(link, exclusive=True)
    assert not (tmp_path / "nowhere").exists()


def test_an_empty_file_is_its_owners_alone_and_a_mark_there_is_kept(tmp_path):
    claim = tmp_path / "claim"
    create_empty_file(claim, exclusive=True)
    assert claim.read_bytes() == b"" and stat.S_IMODE(os.stat(claim).st_mode) & 0o077 == 0
    mark = tmp_path / "mark"
    mark.write_text("kept")
    create_empty_file(mark, exclusive=False)
    assert mark.read_text() == "kept"
