"""--skip-bad decodes every file up front (minutes on a large dataset): a progress bar shows it on
a terminal, none in a log (not a terminal) or with `fastp2p pack --no-progress`. Reading every
header (13 s for 50k images, QA of stop 44) gets a bar too once it has taken a second."""
import io

import pytest

from fastp2p.data import create_dataset, folders
from fastp2p.data.pack import pack_phase
from helpers.data_helpers import data_args, make_aligned

BAR = "checking images (--skip-bad)"
HEADERS_BAR = "reading image headers"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def dataroot(tmp_path):
    make_aligned(tmp_path, count=3, width=16, height=16)
    return tmp_path


@pytest.mark.parametrize("terminal", [True, False])
def test_the_up_front_decode_shows_a_bar_on_a_terminal_only(dataroot, monkeypatch, terminal):
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    create_dataset(data_args(dataroot, "--skip-bad"), "train")
    assert (BAR in stderr.getvalue()) == terminal, stderr.getvalue()
    if terminal:
        assert "3/3" in stderr.getvalue()


def test_no_bar_without_skip_bad_or_with_no_progress(dataroot, tmp_path, monkeypatch):
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    create_dataset(data_args(dataroot), "train")     # headers only: fast, no bar
    assert HEADERS_BAR not in stderr.getvalue()
    pack_phase(dataroot, tmp_path / "packed", "train", load_size=16, skip_bad=True,
               progress=False)
    assert BAR not in stderr.getvalue()
    pack_phase(dataroot, tmp_path / "packed", "train", load_size=16, skip_bad=True,
               progress=True)
    assert BAR in stderr.getvalue()


@pytest.mark.parametrize("terminal", [True, False])
def test_header_reads_past_the_delay_show_a_bar_on_a_terminal(dataroot, tmp_path, monkeypatch,
                                                              terminal):
    monkeypatch.setattr(folders, "HEADERS_BAR_AFTER_S", 0)     # as if they took long
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    done = f"{HEADERS_BAR}: 100%"
    create_dataset(data_args(dataroot), "train")
    assert stderr.getvalue().count(done) == terminal, stderr.getvalue()
    assert BAR not in stderr.getvalue()
    pack_phase(dataroot, tmp_path / "quiet", "train", load_size=16, progress=False)
    assert stderr.getvalue().count(done) == terminal
    pack_phase(dataroot, tmp_path / "packed", "train", load_size=16, progress=True)
    assert stderr.getvalue().count(done) == 2 * terminal


@pytest.mark.parametrize("local_rank, drawn", [("0", True), ("1", False)])
def test_under_torchrun_a_nodes_first_process_alone_draws_the_bars(dataroot, monkeypatch,
                                                                   local_rank, drawn):
    """Every process of a node scans the same split onto the same terminal: N processes drew N
    bars over each other."""
    for name, value in (("WORLD_SIZE", "4"), ("RANK", local_rank), ("LOCAL_RANK", local_rank)):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(folders, "HEADERS_BAR_AFTER_S", 0)     # as if they took long
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    create_dataset(data_args(dataroot), "train")
    create_dataset(data_args(dataroot, "--skip-bad"), "train")
    assert (HEADERS_BAR in stderr.getvalue()) is drawn, stderr.getvalue()
    assert (BAR in stderr.getvalue()) is drawn, stderr.getvalue()
