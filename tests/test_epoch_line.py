"""The line at the end of an epoch names the checkpoint sets it saves as files are named
("saving latest_* and 2_*"); "saving latest, 2" did not say the 2 is a set of its own."""
from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


def test_the_epoch_line_names_each_saved_set(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    assert main(train_argv(data, tmp_path / "ckpt", "--no_html")) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " done: " in line]
    assert lines[0].startswith("epoch 1 done: 4 images") and lines[0].endswith(
        ", saving latest_*"), lines
    assert lines[1].endswith(", saving latest_* and 2_*"), lines  # the last epoch's set too
