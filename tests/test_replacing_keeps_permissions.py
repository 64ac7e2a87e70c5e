"""A file fastp2p replaces (a temporary sibling renamed over it: ``atomic_files.replacing``, and
the checkpoints' ``TemporaryFile``) keeps the permission bits its owner gave it: a ``chmod 640``
loss log, a group-writable train_opt.txt in a shared run folder. They got the default mode of a
new file. A file made afresh still gets the default (the umask's)."""
import os

import pytest

from fastp2p.atomic_files import TemporaryFile, replacing

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


@pytest.fixture
def umask_077():
    """A umask under which a new file's default mode (0o600) is none of the modes tested."""
    before = os.umask(0o077)
    yield
    os.umask(before)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o7777


@pytest.mark.parametrize("mode", [0o640, 0o664, 0o444], ids=oct)
def test_a_replaced_file_keeps_its_permission_bits(tmp_path, umask_077, mode):
    path, new = tmp_path / "loss_log.csv", os.urandom(64)
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with replacing(path) as file:
        file.write(new)
    assert (_mode(path), path.read_bytes()) == (mode, new)


def test_a_checkpoint_file_replaced_keeps_its_permission_bits(tmp_path, umask_077):
    path = tmp_path / "latest_net_G.pth"
    path.write_bytes(os.urandom(32))
    path.chmod(0o640)
    temp = TemporaryFile(path)
    with temp.file:
        temp.file.write(os.urandom(64))
    temp.rename_into_place()
    assert _mode(path) == 0o640


def test_a_new_file_gets_the_default_mode_and_a_replaced_link_none_of_its_bits(
        tmp_path, umask_077):
    with replacing(tmp_path / "new.txt") as file:
        file.write(os.urandom(16))
    assert _mode(tmp_path / "new.txt") == 0o600
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(os.urandom(16))
    target.chmod(0o666)
    (tmp_path / "linked.txt").symlink_to(target)
    with replacing(tmp_path / "linked.txt") as file:   # replaces the link itself
        file.write(os.urandom(16))
    assert _mode(tmp_path / "linked.txt") == 0o600


def test_no_setuid_bit_is_kept(tmp_path, umask_077):
    path = tmp_path / "train_opt.txt"
    path.write_bytes(os.urandom(32))
    path.chmod(0o4750)
    with replacing(path) as file:
        file.write(os.urandom(16))
    assert _mode(path) == 0o750


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a file to another user needs root")
def test_another_users_file_lends_none_of_its_bits(tmp_path, umask_077):
    """A file another user put at a name fastp2p writes (a shared run folder): its 0o666 is
    not this user's choice for what replaces it."""
    path = tmp_path / "loss_log.csv"
    path.write_bytes(os.urandom(32))
    path.chmod(0o666)
    os.chown(path, 12345, 12345)
    with replacing(path) as file:
        file.write(os.urandom(16))
    assert _mode(path) == 0o600


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_temporary_file_is_its_owners_alone_until_it_takes_the_bits(
        tmp_path, umask_022, monkeypatch):
    """Created 0o644 under umask 022 and narrowed after, another user could open a 0o640
    file's replacement in between and read what followed."""
    modes_before_chmod, fchmod = [], os.fchmod

    def spying_fchmod(fd, mode):
        modes_before_chmod.append(os.fstat(fd).st_mode & 0o777)
        fchmod(fd, mode)
    monkeypatch.setattr(os, "fchmod", spying_fchmod)
    path = tmp_path / "loss_log.csv"
    path.write_bytes(os.urandom(32))
    path.chmod(0o640)
    with replacing(path) as file:
        file.write(os.urandom(16))
    assert (modes_before_chmod, _mode(path)) == ([0o600], 0o640)


_ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                           reason="giving a file to another group needs root")


def _replaced_team_file(folder, mode: int):
    """A file of group 4242 with ``mode``, replaced: its path."""
    path = folder / "latest_net_G.pth"
    path.write_bytes(os.urandom(32))
    os.chown(path, -1, 4242)
    path.chmod(mode)
    with replacing(path) as file:
        file.write(os.urandom(16))
    return path


@_ROOT
def test_a_replaced_file_keeps_its_group(tmp_path, umask_077):
    path = _replaced_team_file(tmp_path, 0o660)
    assert (_mode(path), os.stat(path).st_gid) == (0o660, 4242)


@_ROOT
def test_a_group_the_file_cannot_be_given_lends_none_of_its_bits(tmp_path, umask_077,
                                                                 monkeypatch):
    """A user no longer in the old file's group: its group bits were that group's, not the
    process's own group's."""
    def refused(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "fchown", refused)
    assert _mode(_replaced_team_file(tmp_path, 0o664)) == 0o604


def test_a_folder_that_refuses_the_temporary_file_is_said_of_the_file_replaced(tmp_path,
                                                                            monkeypatch):
    """A read-only run folder named '.train_opt.txt.tmp-PID.txt', a name the user never
    gave."""
    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(os, "open", refused)
    target = tmp_path / "train_opt.txt"
    with pytest.raises(PermissionError) as error:
        with replacing(target) as file:
            file.write(b"lr: 0.0002\n")
    assert error.value.filename == str(target)
