"""Error messages that named the wrong thing: pack --workers spoke of "the reference's default"
(the reference has no pack), `--model ""` ended in "the reference implementation for " (an
empty name), and a phase folder that is not there did not point to --phase, its usual cause."""
import pytest

from fastp2p.cli import build_parser, main
from fastp2p.data.errors import DataError
from fastp2p.data.folders import require_folder


def test_pack_workers_past_the_cores_name_no_reference_default(monkeypatch, capsys):
    monkeypatch.setattr("fastp2p.cpu_info.usable_cpus", lambda: 2)
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_known_args(["pack", "--workers", "99", "in", "out"])
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "more pack workers than cores (or than 4 on fewer)" in line, line
    assert "reference" not in line


def test_an_empty_model_name_is_refused_without_an_empty_name(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", ""]) != 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("--model '': fastp2p implements pix2pix only; use --model pix2pix "
                         "(or leave it out)"), line


def test_a_missing_phase_folder_points_to_phase(tmp_path):
    with pytest.raises(DataError, match="--phase"):
        require_folder(tmp_path / "nope", "A|B images side by side (*.jpg, *.png)")
