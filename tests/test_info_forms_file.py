"""`fastp2p info` says where the CPU transposed convolutions' measured forms are remembered
only where they can be (QA concurrent 4): it named a file in a folder that could not be made,
and, with no cache folder at all (no FASTP2P_CACHE, no home folder: a container's user with no
passwd entry), it stopped with a traceback, though inference goes on measuring each time."""
import pytest

from fastp2p import info
from fastp2p.cache_folder import NoCacheFolder
from fastp2p.ops import onednn_packed, remembered_forms


@pytest.fixture(autouse=True)
def measured(monkeypatch):
    if not onednn_packed.available():
        pytest.skip("without oneDNN's packed ops one form applies: nothing is measured")
    monkeypatch.delenv("FASTP2P_CPU_DECONV", raising=False)


def test_a_cache_folder_that_cannot_be_made_is_said_so(monkeypatch, tmp_path):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_bytes(b"\x01")
    monkeypatch.setenv("FASTP2P_CACHE", str(blocker / "cache"))
    line = info._cpu_inference_line()
    assert "remembered in" not in line
    assert line.endswith(f"(not remembered: FASTP2P_CACHE={blocker / 'cache'}: {blocker} is "
                         "no folder; set FASTP2P_CACHE to a folder, or move the file away)")


def test_no_cache_folder_is_said_so(monkeypatch):
    def no_folder():
        raise NoCacheFolder("no folder for fastp2p's cache: FASTP2P_CACHE is not set and the "
                            "home folder is unknown (x); set FASTP2P_CACHE to a writable folder")
    monkeypatch.setattr(remembered_forms, "cache_root", no_folder)
    assert info._cpu_inference_line().endswith(
        "(not remembered: no folder for fastp2p's cache: FASTP2P_CACHE is not set and the home "
        "folder is unknown (x); set FASTP2P_CACHE to a writable folder)")


def test_a_forms_file_this_user_cannot_read_is_said_so(monkeypatch, tmp_path):
    """Simulated: root reads any file. Another user's file written 0600 is never replaced (its
    entries would be lost), so nothing measured here is remembered; info named it as where."""
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    remembered_forms.RememberedForms().put(("another user's layer",), "gemm")
    file = remembered_forms.path()

    def read_json(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(remembered_forms, "read_json", read_json)
    assert info._cpu_inference_line().endswith(
        f"(not remembered: {file}: not readable to you (another user's, written under a umask "
        "that keeps others out), so the CPU transposed convolutions' forms measured here are "
        "not added to cpu_deconv_forms.json; ask its owner to chmod a+r it, or set "
        "FASTP2P_CACHE to a folder of your own)")


def test_a_writable_cache_folder_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "not made yet"))
    assert info._cpu_inference_line().endswith(
        f" and remembered in {tmp_path / 'not made yet' / 'cpu_deconv_forms.json'}")
