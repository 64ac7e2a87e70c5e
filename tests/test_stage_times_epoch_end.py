"""train's end-of-run figures count the epoch-end saves: with the default --save_latest_freq a
small dataset's checkpoints are all written at epoch ends, which ran outside any stage, so
"time in data ..., step ..." named no checkpoint share although the saves took their time
inside the measured window (the help promises the share spent copying checkpoints)."""
from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


def test_epoch_end_saves_have_a_checkpoint_share(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=3)
    argv = train_argv(data, tmp_path / "checkpoints", "--n_epochs", "3", "--n_epochs_decay", "0",
                      "--no_html")
    assert main(argv) == 0
    figures = [line for line in capsys.readouterr().out.splitlines() if "time in data" in line]
    assert len(figures) == 1 and "checkpoint " in figures[0], figures
    assert "sample " not in figures[0]   # --no_html: no sample is drawn, none is counted
