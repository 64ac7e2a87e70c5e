"""Image files and folders that cannot be read (permissions), in a dataset that `fastp2p pack`
reads: one line naming them; with --skip-bad they are skipped and listed, as any bad file is.

They used to be: a subfolder that cannot be listed stopped a pack even with --skip-bad; a file
in a folder without search permission stopped it with "Permission denied ... run the same
command again to resume" (a stat in the listing), --skip-bad or not; and an unreadable image was
called "truncated or corrupt".

The commands run in a child process that file permissions bind, as root too
(``helpers.permission_helpers``), outside the checkout (whose fastp2p/ would shadow the
installed package).
"""
import sys

import pytest

from helpers.data_helpers import make_aligned, tiny_pack_args
from helpers.permission_helpers import (denied,  # noqa: F401 (fixture)
                                        fastp2p_bound_by_permissions)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file permissions")


def test_with_skip_bad_a_folder_that_cannot_be_listed_is_skipped_and_listed(tmp_path, denied):
    data = tmp_path / "data"
    make_aligned(data, count=2)
    make_aligned(data / "train", count=1, phase="locked")
    denied(data / "train" / "locked")
    run = fastp2p_bound_by_permissions(tmp_path,
                                       *tiny_pack_args(data, tmp_path / "out", "--skip-bad"))
    assert run.returncode == 0, run.stderr
    assert "2 pairs in" in run.stdout and "1 bad file skipped" in run.stdout
    assert run.stderr == ("  skipped train/locked: cannot list this folder (Permission denied); "
                          "its images are left out\n")


def test_an_image_in_a_folder_without_search_permission_is_skipped_with_skip_bad(tmp_path,
                                                                                 denied):
    data = tmp_path / "data"
    make_aligned(data, count=2)
    make_aligned(data / "train", count=1, phase="listable")
    denied(data / "train" / "listable", 0o444)     # its names can be read, not its files
    run = fastp2p_bound_by_permissions(tmp_path,
                                       *tiny_pack_args(data, tmp_path / "out", "--skip-bad"))
    assert run.returncode == 0, run.stderr
    assert "2 pairs in" in run.stdout
    assert run.stderr == ("  skipped train/listable/pair00.png: cannot read it (permission "
                          "denied)\n")


def test_an_unreadable_image_is_called_unreadable_not_corrupt(tmp_path, denied):
    data = tmp_path / "data"
    image = make_aligned(data, count=2)[1]
    denied(image)
    run = fastp2p_bound_by_permissions(tmp_path, *tiny_pack_args(data, tmp_path / "out"))
    assert run.returncode == 1
    assert run.stderr.startswith(f"fastp2p pack: error: {image}: cannot read it (permission "
                                 "denied); fix or remove it, or pass --skip-bad")
    assert run.stderr.count("\n") == 1
