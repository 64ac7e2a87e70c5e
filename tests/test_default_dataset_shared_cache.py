"""The embedded dataset built into a cache several users share (QA concurrent 2): the built
folders follow the umask, as the rest of the cache does (``tempfile.mkdtemp`` made them 0700
whatever the umask, so another user of the cache got a bare "Permission denied"), and a build
another user left unreadable is one DataError naming it and what to do."""
import os
import stat

import pytest

from fastp2p.data import DataError
from fastp2p.data import default_dataset
from fastp2p.data.default_dataset import BUILT_MARKER, _built_once


def _build(folder):
    (folder / "train").mkdir()
    (folder / "train" / "x.jpg").write_bytes(os.urandom(64))


@pytest.fixture
def umask_002():
    before = os.umask(0o002)
    yield
    os.umask(before)


def test_a_built_folder_follows_the_umask_and_the_cache_folders_group(tmp_path, umask_002):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o2777)   # a shared cache: its group passed on to what is made in it
    final = _built_once(cache / "default-x", _build, "the default dataset")
    mode = final.stat().st_mode
    assert stat.S_IMODE(mode) & 0o777 == 0o775
    assert mode & stat.S_ISGID


def test_a_build_another_user_left_unreadable_is_one_error_saying_what_to_do(tmp_path,
                                                                                 monkeypatch):
    """Simulated: root may read any folder, so the marker's stat is refused as it is for
    another user of a folder built 0700."""
    final = tmp_path / "cache" / "default-x"
    _built_once(final, _build, "the default dataset")
    real_stat = os.stat

    def stat_refused(path, *args, **kwargs):
        if str(path).startswith(str(final) + os.sep):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(default_dataset.os, "stat", stat_refused)
    with pytest.raises(DataError) as refused:
        _built_once(final, _build, "the default dataset")
    message = str(refused.value)
    assert message.startswith(f"{final}: ") and "Permission denied" in message
    assert "FASTP2P_CACHE" in message and "\n" not in message
    monkeypatch.undo()
    assert (final / BUILT_MARKER).is_file()   # nothing was moved or built again
