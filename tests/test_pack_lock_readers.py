"""The pack folder's lock (`.pack.lock`) between `fastp2p pack` and what reads the pack:

- pack opened the lock file through a symbolic link planted at its name (creating a file at
  the link's target); it now refuses the link in one line naming it.
"""
import os

from fastp2p.cli import main
from fastp2p.data.folder_lock import LOCK_NAME
from helpers.data_helpers import make_aligned, tiny_pack_args


def test_a_symbolic_link_at_the_lock_file_is_refused_not_followed(tmp_path, capsys):
    data = tmp_path / "data"
    make_aligned(data, count=2)
    target = tmp_path / "victim"
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / LOCK_NAME).symlink_to(target)
    capsys.readouterr()
    assert main(tiny_pack_args(data, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert not os.path.lexists(target)
    assert LOCK_NAME in err and "symbolic link" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "train" / "index.json").exists()
