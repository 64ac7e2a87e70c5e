"""What the training page (web/index.html, its samples and loss plot) and the end summary show
(QA r1): after a resume from an older epoch, the samples of the run it discards are gone."""
import re

from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


def _page_steps(run) -> list:
    """The steps of the sample sections web/index.html lists, top to bottom."""
    page = (run / "web" / "index.html").read_text()
    return [int(step) for step in re.findall(r"<h3>epoch\d+, step(\d+)</h3>", page)]


def test_a_resume_from_an_older_epoch_deletes_the_discarded_runs_samples(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    checkpoints, run = tmp_path / "ckpt", tmp_path / "ckpt" / "tiny"
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1")) == 0
    assert max(_page_steps(run)) == 8   # 2 epochs of 4 steps
    # from epoch 1 (step 4) with batch 2: this run's steps are 5 and 6
    assert main(train_argv(data, checkpoints, "--continue_train", "--epoch", "1",
                           "--batch_size", "2")) == 0
    assert _page_steps(run)[0] == 6 and max(_page_steps(run)) == 6
    images = sorted(path.name for path in (run / "web" / "images").iterdir())
    assert not [name for name in images if "step0000008" in name], images
