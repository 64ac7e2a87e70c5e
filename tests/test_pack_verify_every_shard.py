"""`fastp2p pack --verify OUT` checks every shard of every pack in OUT, past bad ones: it stopped
at the first bad shard, so the packs after it (val, after train) were never checked nor named,
and further bad shards of the same pack went unreported. Now each bad shard is one error line
(naming it and the command that repacks it), each pack's result a line on stdout, then a
total; a pack whose index cannot be read is named and the others are still checked; past
MAX_LISTED bad shards a pack's are counted, not listed."""
import json

import fastp2p.data.pack_command as pack_command
from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args


def _pack(tmp_path, pairs=None):
    """OUT of a pack of train (6 pairs), val and test (2 each), one pair per shard."""
    data, out = tmp_path / "data", tmp_path / "out"
    pairs = pairs or {"train": 6, "val": 2, "test": 2}
    for phase, count in pairs.items():
        make_aligned(data, count=count, phase=phase)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "1")) == 0
    return out


def _flip(shard):
    damaged = bytearray(shard.read_bytes())
    damaged[5] ^= 0x01
    shard.write_bytes(bytes(damaged))


def _verify(out, capsys):
    capsys.readouterr()
    code = main(["pack", "--verify", str(out), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_every_pack_and_every_bad_shard_is_checked_and_named(tmp_path, capsys):
    out = _pack(tmp_path)
    bad = [out / "train" / "shard-00002.u8", out / "train" / "shard-00004.u8",
           out / "val" / "shard-00001.u8"]
    for shard in bad:
        _flip(shard)
    code, stdout, stderr = _verify(out, capsys)
    assert code == 1
    assert len(stderr) == 3, stderr
    for line, shard in zip(stderr, bad):
        assert line.startswith(f"fastp2p pack: error: {shard}: checksum does not match the "
                               "index: corrupt; re-run `fastp2p pack "), line
        assert f"--phase {shard.parent.name} " in line
    assert stdout == [f"{out / 'test'}: 2 pairs of 16x32 in 2 shards: checksums OK",
                      f"{out / 'train'}: 6 pairs of 16x32 in 6 shards: 2 bad",
                      f"{out / 'val'}: 2 pairs of 16x32 in 2 shards: 1 bad",
                      f"{out}: 2 of 3 packs failed the check: train (2 bad shards of 6), "
                      "val (1 bad shard of 2)"]


def test_a_pack_whose_index_cannot_be_read_leaves_the_others_checked(tmp_path, capsys):
    out = _pack(tmp_path)
    index = json.loads((out / "train" / "index.json").read_text())
    index["count"] = 0
    (out / "train" / "index.json").write_text(json.dumps(index))
    _flip(out / "val" / "shard-00000.u8")
    code, stdout, stderr = _verify(out, capsys)
    assert code == 1
    assert stderr[0].startswith(f"fastp2p pack: error: {out / 'train' / 'index.json'}: field "
                                "'count' must be an integer >= 1")
    assert stderr[1].startswith(f"fastp2p pack: error: {out / 'val' / 'shard-00000.u8'}: "
                                "checksum does not match")
    assert len(stderr) == 2
    assert stdout[0] == f"{out / 'test'}: 2 pairs of 16x32 in 2 shards: checksums OK"
    assert stdout[-1] == (f"{out}: 2 of 3 packs failed the check: train (not checked), "
                          "val (1 bad shard of 2)")


def test_past_max_listed_a_pack_s_bad_shards_are_counted_not_listed(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr(pack_command, "MAX_LISTED", 2)
    out = _pack(tmp_path, {"train": 6})
    for number in range(5):
        (out / "train" / f"shard-{number:05d}.u8").write_bytes(b"x")
    code, stdout, stderr = _verify(out, capsys)
    assert code == 1
    assert [line.split(": shard is")[0] for line in stderr[:2]] == [
        f"fastp2p pack: error: {out / 'train' / name}" for name in ("shard-00000.u8",
                                                                    "shard-00001.u8")]
    assert stderr[2:] == [f"fastp2p pack: error: {out / 'train'}: and 3 more bad shard files, "
                          "not listed"]
    assert stdout == [f"{out / 'train'}: 6 pairs of 16x32 in 6 shards: 5 bad"]
