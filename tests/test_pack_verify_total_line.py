"""`fastp2p pack --verify OUT` ends with a total line whenever OUT holds several packs, as the
README says: it came only when a pack failed, so a clean run of several packs left the reader
to add up their lines (QA). One pack, OUT itself or alone in it, needs none."""
from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args


def _verify_lines(tmp_path, capsys, phases):
    data, out = tmp_path / "data", tmp_path / "out"
    for phase in phases:
        make_aligned(data, count=2, phase=phase)
    assert main(tiny_pack_args(data, out)) == 0
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return out, captured.out.splitlines()


def test_several_good_packs_end_with_a_total_line(tmp_path, capsys):
    out, lines = _verify_lines(tmp_path, capsys, ["train", "val", "test"])
    assert len(lines) == 4 and all(line.endswith("checksums OK") for line in lines[:3])
    assert lines[3] == f"{out}: all 3 packs passed the check"


def test_one_pack_has_no_total_line(tmp_path, capsys):
    out, lines = _verify_lines(tmp_path, capsys, ["train"])
    assert lines == [f"{out / 'train'}: 2 pairs of 16x32 in 2 shards: checksums OK"]
