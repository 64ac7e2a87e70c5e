"""`fastp2p pack` draws its tqdm bars on a terminal only, as `fastp2p train` does: into a pipe or a
log file (`> pack.log 2>&1`) every redrawn frame stayed, joined by carriage returns, for the
synthetic pairs, the packing, the re-check of kept shards and `--verify`."""
import io
import sys

from fastp2p.cli import main

# what a tqdm bar's frames hold, and a plain line never does
BAR_MARKS = ("\r", "%|", "pair/s", "shard/s")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _pack_runs(data, out) -> list[list[str]]:
    """A synthetic pack, its re-run (which checks the kept shards) and its --verify."""
    pack = ["pack", "--synthetic", "4", str(data), str(out), "--load_size", "16", "--workers",
            "1", "--pairs-per-shard", "2"]
    return [pack, pack, ["pack", "--verify", str(out)]]


def test_off_a_terminal_pack_draws_no_bar(tmp_path, capsys):
    for command in _pack_runs(tmp_path / "data", tmp_path / "out"):
        assert main(command) == 0
        err = capsys.readouterr().err
        assert not [mark for mark in BAR_MARKS if mark in err], (command, err)


def test_on_a_terminal_pack_draws_its_bars(tmp_path, monkeypatch):
    shown = []
    for command in _pack_runs(tmp_path / "data", tmp_path / "out"):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main(command) == 0
        shown.append(terminal.getvalue())
    synthetic_and_pack, check, verify = shown
    assert "synthetic train: 100%" in synthetic_and_pack and "pack train: 100%" in (
        synthetic_and_pack)
    assert "check train: 100%" in check
    assert "verify train: 100%" in verify
