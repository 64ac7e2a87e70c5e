"""`fastp2p pack --verify OUT` checks every pack in OUT, whatever `--phase` named its folder: it
used to look in train/, val/ and test/ only, so a pack of `--phase extra` was "no packed
dataset here", and a corrupt one beside a good train/ was called OK. The options that only
pack are refused with it."""
from fastp2p.cli import main
from helpers.data_helpers import make_aligned


def _pack(tmp_path, *phases):
    data, out = tmp_path / "data", tmp_path / "out"
    for phase in phases:
        make_aligned(data, count=4, phase=phase)
    assert main(["pack", str(data), str(out), "--load_size", "16", "--pairs-per-shard", "2",
                 "--workers", "1", "--no-progress", "--phase", *phases]) == 0
    return out


def test_verify_finds_a_pack_of_another_phase_name(tmp_path, capsys):
    out = _pack(tmp_path, "extra")
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 0
    assert f"{out / 'extra'}: 4 pairs of 16x32 in 2 shards: checksums OK" in capsys.readouterr().out


def test_verify_fails_on_a_corrupt_pack_of_another_phase_name_beside_train(tmp_path, capsys):
    out = _pack(tmp_path, "train", "extra")
    shard = out / "extra" / "shard-00001.u8"
    damaged = bytearray(shard.read_bytes())
    damaged[0] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    assert f"{shard}: checksum does not match the index" in capsys.readouterr().err


def test_verify_refuses_the_packing_options_it_would_ignore(tmp_path, capsys):
    """--verify packs nothing: packing options given with it were ignored without a word, and
    so was --phase (every phase folder's pack is checked). --no-progress still applies. A value
    that the option's type refuses as it is parsed (--load_size 0, --pairs-per-shard -4, as
    --workers 0) is said first, as for any command."""
    out = _pack(tmp_path, "train")
    capsys.readouterr()
    # parser.error, as pack's usage errors: exit code 2
    assert main(["pack", "--verify", str(out), "--load_size", "72", "--gray", "--pairs-per-shard",
                 "4", "--no-progress"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == ("fastp2p pack: error: --verify OUT checks a pack and packs nothing, so "
                     "--load_size, --pairs-per-shard, --gray would do nothing: drop them"), error
    assert main(["pack", "--verify", str(out), "--load_size", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "argument --load_size: must be >= 1, got 0")
    assert main(["pack", "--verify", str(out), "--phase", "val", "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "so --phase would do nothing: drop it")
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 0


def test_verify_refuses_packing_options_given_at_their_defaults(tmp_path, capsys):
    """A packing option typed with its default value (--load_size 286) was let through, as
    its value was all that was compared: it does nothing all the same."""
    out = _pack(tmp_path, "train")
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--load_size", "286", "--dataset_mode", "aligned",
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "so --load_size, --dataset_mode would do nothing: drop them")
