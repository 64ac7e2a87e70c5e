"""A checkpoint manifest names files of its own folder only. One written by hand (or by an
attacker who can write the folder) with a file name such as "../../x" must be refused in one
line, and neither ``prepare()`` (which finishes renames a manifest records) nor --overwrite's
``remove_sets(saved_sets())`` may rename, overwrite or remove a file anywhere else."""
import hashlib
import json
import re

import pytest

from fastp2p.train.checkpoints import MANIFEST_FORMAT, CheckpointFolder

USER_DATA = b"user data outside the checkpoint folder"
STAGED_DATA = b"bytes of a staged checkpoint file"
STAGED_NAME = ".latest_net_G.pth.tmp-1"  # a temporary name of a save that was not renamed yet


def _entry(data: bytes, staged: str) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "staged": staged}


def _bad_names(tmp_path, folder):
    """form -> (name in the manifest, the file it would reach). The folder is tmp/ckpt/run."""
    victim = tmp_path / "victim.txt"
    return {"parent": ("../../victim.txt", victim),
            "absolute": (str(victim), victim),
            "subfolder": ("sub/victim.txt", folder / "sub" / "victim.txt"),
            "dotdot": ("..", victim),   # the parent folder: victim.txt is in it
            "dot": (".", victim),       # the folder itself
            "empty": ("", victim)}      # the folder itself too (folder / "")


@pytest.fixture(params=["staged", "file"])
def tampered(request, tmp_path):
    """(kind, folder): where ``_write_manifest`` puts the bad name, as the staged (temporary)
    name of a file or as the file's own name, and an empty run folder with a subfolder."""
    folder = CheckpointFolder(tmp_path / "ckpt", "run")
    (folder.path / "sub").mkdir(parents=True)
    return request.param, folder


FORMS = ["parent", "absolute", "subfolder", "dotdot", "dot", "empty"]


def _write_manifest(folder, kind, name):
    """A set whose manifest names ``name``, with the checksums that would make ``prepare()``
    rename: the victim's for a staged name (moving the victim into the folder), a staged
    file's for a file name (the rename would overwrite the victim)."""
    if kind == "staged":
        files = {"latest_net_G.pth": _entry(USER_DATA, name)}
    else:
        (folder.path / STAGED_NAME).write_bytes(STAGED_DATA)
        files = {name: _entry(STAGED_DATA, STAGED_NAME)}
    manifest = {"format": MANIFEST_FORMAT, "generation": 1, "step": 1, "files": files}
    folder.file("latest", "checkpoint.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("form", FORMS)
def test_a_manifest_naming_a_file_outside_its_folder_is_refused_in_one_line(tampered, tmp_path,
                                                                            form):
    kind, folder = tampered
    name, _ = _bad_names(tmp_path, folder.path)[form]
    _write_manifest(folder, kind, name)
    with pytest.raises(ValueError) as refused:
        folder.manifest("latest")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{folder.file('latest', 'checkpoint.json')}: not a fastp2p "
                              "checkpoint manifest")
    assert re.search(re.escape(f"names {name!r}, which is not a file of this folder"), message)


@pytest.mark.parametrize("form", FORMS)
def test_prepare_and_overwrite_leave_files_outside_the_folder_alone(tampered, tmp_path, form):
    kind, folder = tampered
    name, victim = _bad_names(tmp_path, folder.path)[form]
    victim.write_bytes(USER_DATA)
    _write_manifest(folder, kind, name)
    folder.prepare()  # finishes the renames of valid manifests only; must not raise either
    assert victim.read_bytes() == USER_DATA
    assert not folder.file("latest", "net_G.pth").exists()
    folder.remove_sets(folder.saved_sets())  # what --overwrite does
    assert victim.read_bytes() == USER_DATA
    assert folder.path.is_dir() and victim.parent.is_dir()
