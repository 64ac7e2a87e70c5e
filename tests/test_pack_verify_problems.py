"""`fastp2p pack --verify OUT` on what it cannot check: one line naming it, never a traceback.

- a folder in OUT that cannot be read (OUT/lost+found, on a disk of its own) is named on stderr
  and the packs beside it are checked; a shard or OUT itself that cannot be read is an error
  naming it (each was a traceback);
- a folder of shards without their index.json is an error even beside good packs (it passed);
- OUT missing, or a file, is called that (it was "no packed dataset here");
- an index.json that is not a pack's is named, with what makes it so (it was "no index.json");
- OUT that is itself a pack is checked alone: a folder inside it is no part of it (an
  unfinished pack there failed the check).

Permission cases run in a child process that file permissions bind, as root too
(``helpers.permission_helpers``), outside the checkout (whose fastp2p/ would shadow the
installed package).
"""
import sys

import pytest

from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args
from helpers.permission_helpers import (denied,  # noqa: F401 (fixture)
                                        fastp2p_bound_by_permissions)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file permissions")


def _packed(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    assert main(tiny_pack_args(data, out)) == 0
    return out


@posix_only
def test_verify_names_a_folder_it_cannot_read_and_checks_the_rest(tmp_path, denied):
    out = _packed(tmp_path)
    (out / "lost+found").mkdir()
    denied(out / "lost+found")
    run = fastp2p_bound_by_permissions(tmp_path, "pack", "--verify", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{out / 'train'}: 2 pairs of 16x32 in 2 shards: checksums OK\n"
    assert run.stderr == (f"fastp2p pack: not checked, as they cannot be read: lost+found "
                          f"(Permission denied) in {out}\n")


@posix_only
def test_verify_names_a_shard_it_cannot_read(tmp_path, denied):
    shard = _packed(tmp_path) / "train" / "shard-00001.u8"
    denied(shard)
    run = fastp2p_bound_by_permissions(tmp_path, "pack", "--verify", str(shard.parent.parent),
                                       "--no-progress")
    assert run.returncode == 1
    assert run.stderr == (f"fastp2p pack: error: {shard}: cannot read it (Permission denied); "
                          "make it readable by this user (its permissions, or its folders'), "
                          "then check it again\n")


@posix_only
def test_verify_names_an_out_folder_it_cannot_list(tmp_path, denied):
    out = _packed(tmp_path)
    denied(out)
    run = fastp2p_bound_by_permissions(tmp_path, "pack", "--verify", str(out), "--no-progress")
    assert run.returncode == 1
    assert run.stderr == (f"fastp2p pack: error: {out}: cannot list this folder (Permission "
                          "denied); make it readable by this user (its permissions, or its "
                          "folders')\n")


def _verify(out, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["pack", "--verify", str(out), "--no-progress"])
    return code, capsys.readouterr().err


def test_verify_fails_on_shards_without_their_index_beside_a_good_pack(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    for phase in ("train", "test"):
        make_aligned(data, count=2, phase=phase)
    assert main(tiny_pack_args(data, out, "--phase", "train", "test")) == 0
    (out / "test" / "index.json").unlink()
    code, err = _verify(out, capsys)
    assert code == 1
    assert err.startswith(f"fastp2p pack: error: {out / 'test'}: pack shards without their "
                          "index.json")


def test_verify_of_a_file_or_a_missing_folder_says_so(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, err = _verify(tmp_path / "file", capsys)
    assert code == 1 and err.startswith(f"fastp2p pack: error: {tmp_path / 'file'}: is a file, "
                                        "not a folder;")
    code, err = _verify(tmp_path / "missing", capsys)
    assert code == 1 and err.startswith(f"fastp2p pack: error: {tmp_path / 'missing'}: not "
                                        "found;")


def test_verify_of_a_pack_ignores_a_folder_inside_it(tmp_path, capsys):
    train = _packed(tmp_path) / "train"
    (train / "notes").mkdir()
    (train / "notes" / "pack-state.json").write_text("{}")     # as an unfinished pack's
    code, err = _verify(train, capsys)
    assert code == 0, err


@pytest.mark.parametrize("text, why", [
    ('{"hello": 1}', 'no "format": "fastp2p-pack" in it; field \'load_size\' must be an integer '
                     '>= 1, got None'),
    ('[1, 2]', "not a JSON object"),
    ("{", "unreadable: "),
], ids=["another-schema", "a-list", "not-json"])
def test_verify_names_an_index_json_that_is_not_a_pack_s(tmp_path, capsys, text, why):
    """It said "no index.json in it or in its subfolders" of a folder that held one."""
    (tmp_path / "out" / "train").mkdir(parents=True)
    index = tmp_path / "out" / "train" / "index.json"
    index.write_text(text)
    code, err = _verify(tmp_path / "out", capsys)
    assert code == 1
    assert err.startswith(f"fastp2p pack: error: {tmp_path / 'out'}: no packed dataset here: "
                          f"{index} is not a fastp2p pack's index ({why}")
    assert err.endswith("; pack one with `fastp2p pack DATAROOT OUT`\n")
    assert err.count("\n") == 1


@posix_only
def test_verify_of_a_folder_holding_only_one_it_cannot_read_says_no_pack_is_there(tmp_path,
                                                                                denied):
    """No pack beside a folder it cannot read: looking for another program's index.json in
    that folder was a traceback."""
    out = tmp_path / "out"
    (out / "lost+found").mkdir(parents=True)
    denied(out / "lost+found")
    run = fastp2p_bound_by_permissions(tmp_path, "pack", "--verify", str(out), "--no-progress")
    assert run.returncode == 1
    assert run.stderr == (f"fastp2p pack: not checked, as they cannot be read: lost+found "
                          f"(Permission denied) in {out}\n"
                          f"fastp2p pack: error: {out}: no packed dataset here (no index.json "
                          "in it or in its immediate subfolders); pack one with `fastp2p "
                          "pack DATAROOT OUT`\n")
