"""A damaged image inside fastp2p's cache folder (the embedded dataset fastp2p built there) is
advised to be rebuilt, not skipped: its error said "fix or remove it, or pass --skip-bad",
which kept the damaged cache. A file elsewhere keeps that advice."""
import pytest

from fastp2p.data.errors import SKIP_HINT, DataError, raise_or_report
from fastp2p.data.folders import open_rgb


@pytest.fixture
def truncated_jpeg_in(tmp_path):
    def write(folder):
        path = folder / "train" / "1.jpg"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 16)   # a JPEG's start, then nothing
        return path
    return write


def test_a_damaged_file_in_the_cache_says_to_delete_its_cached_folder(truncated_jpeg_in,
                                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    path = truncated_jpeg_in(tmp_path / "cache" / "default-gray2color-0123")
    folder = (tmp_path / "cache" / "default-gray2color-0123").resolve()
    with pytest.raises(DataError) as decoded:
        open_rgb(path)
    with pytest.raises(DataError) as scanned:
        raise_or_report([(path, "truncated or corrupt image")], False, "train")
    for error in (decoded, scanned):
        message = str(error.value)
        assert f"delete {folder} and run again" in message, message
        assert "--skip-bad" not in message, message


def test_a_damaged_file_elsewhere_keeps_the_skip_advice(truncated_jpeg_in, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    path = truncated_jpeg_in(tmp_path / "data")
    with pytest.raises(DataError, match="pass --skip-bad"):
        open_rgb(path)
    with pytest.raises(DataError) as scanned:
        raise_or_report([(path, "truncated or corrupt image")], False, "train")
    assert str(scanned.value).endswith(SKIP_HINT)


def test_a_file_in_a_cache_folder_fastp2p_did_not_build_keeps_the_skip_advice(
        truncated_jpeg_in, tmp_path, monkeypatch):
    """FASTP2P_CACHE may be a folder that holds the user's own data too (their home)."""
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    path = truncated_jpeg_in(tmp_path / "my_dataset")
    with pytest.raises(DataError, match="pass --skip-bad"):
        open_rgb(path)
