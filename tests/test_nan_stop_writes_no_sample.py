"""A step whose losses are NaN or Inf is checked before its sample is drawn: the run stops with
its one line, and no sample image of that step's non-finite output (NaN cast to uint8: an
all-black fake_B) reaches the page or a tracker, nor numpy's "invalid value encountered in
cast" warning the terminal."""
import warnings

import pytest

import fastp2p.train.trackers as trackers_module
from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


class _RecordingTracker:
    def __init__(self):
        self.images, self.scalars = [], []

    def log_scalars(self, step, values):
        self.scalars.append(step)

    def log_images(self, step, images):
        self.images.append(step)

    def close(self):
        pass


# the --display_freq sample (each image), and the final one of the last epoch's last step
@pytest.mark.parametrize("display_freq", ["1", "1000"])
def test_a_nan_step_stops_before_its_sample(tmp_path, monkeypatch, capsys, display_freq):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    tracker = _RecordingTracker()
    monkeypatch.setattr(trackers_module, "open_trackers", lambda *args: [tracker])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # lr 1e30: the losses are NaN from the first step; --log-every 1000: no loss read
        # before the sample
        code = main(train_argv(data, tmp_path / "ck", "--lr", "1e30", "--n_epochs_decay", "0",
                               "--display_freq", display_freq, "--log-every", "1000"))
    assert code == 1
    out, err = capsys.readouterr()
    assert "a loss became NaN or Inf at step 1 (epoch 1); training stopped and no checkpoint " \
           "was written. Lower --lr (or --lambda_L1) or check the data" in err
    assert "Warning" not in err and not [str(w.message) for w in caught]
    images = tmp_path / "ck" / "tiny" / "web" / "images"
    assert not list(images.glob("*.png")) if images.exists() else True
    assert tracker.images == [] and tracker.scalars == []
