"""A run stopped by a signal right after its last step writes the final model's sample before
it saves: the resume then runs no step (so it has no batch to draw), and the run still ends
with the sample images an uninterrupted run writes."""
import signal

from fastp2p.cli import main
from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset


def _images(folder):
    return sorted(path.name for path in (folder / "web" / "images").glob("*.png"))


def test_a_signal_after_the_last_step_keeps_the_final_sample(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    # 2 epochs of 4 steps; --display_freq 3: samples at steps 3 and 6, the final one at 8
    assert main(train_argv(data, tmp_path / "straight")) == 0
    expected = _images(tmp_path / "straight/tiny")
    assert any("step0000008" in name for name in expected), expected
    with monkeypatch.context() as patch:
        signal_after_step(patch, 8, signal.SIGTERM)
        assert main(train_argv(data, tmp_path / "stopped")) == 128 + signal.SIGTERM
    assert main(train_argv(data, tmp_path / "stopped", "--continue_train")) == 0
    assert _images(tmp_path / "stopped/tiny") == expected


def test_a_signal_before_the_last_step_adds_no_sample(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    signal_after_step(monkeypatch, 4, signal.SIGTERM)   # the end of epoch 1 of 2
    assert main(train_argv(data, tmp_path / "stopped")) == 128 + signal.SIGTERM
    assert [name for name in _images(tmp_path / "stopped/tiny") if "real_A" in name] == [
        "epoch001_step0000003_real_A.png"]


def test_a_kill_right_after_the_last_steps_latest_save_keeps_the_final_sample(tmp_path,
                                                                              monkeypatch):
    """--save_latest_freq 4 saves `latest` inside the loop at step 8, the last. A SIGKILL right
    after that save commits (here: the writer thread runs nothing more, in order) must find the
    final sample already written, for the resume runs no step to draw it from."""
    from fastp2p.train.background_writer import BackgroundWriter
    from fastp2p.train.checkpoints import CheckpointFolder

    data = write_aligned_dataset(tmp_path / "data")
    assert main(train_argv(data, tmp_path / "straight", "--save_latest_freq", "4")) == 0
    expected = _images(tmp_path / "straight/tiny")
    killed = []
    write, submit = CheckpointFolder.write, BackgroundWriter.submit

    def write_then_die_at_the_last_step(self, labels, snapshot, step=0, **options):
        write(self, labels, snapshot, step, **options)
        killed.extend([step] if step == 8 else [])

    def nothing_runs_after_the_kill(self, job, in_flight=1):
        submit(self, lambda: None if killed else job(), in_flight)

    with monkeypatch.context() as patch:
        patch.setattr(CheckpointFolder, "write", write_then_die_at_the_last_step)
        patch.setattr(BackgroundWriter, "submit", nothing_runs_after_the_kill)
        assert main(train_argv(data, tmp_path / "killed", "--save_latest_freq", "4")) == 0
    assert killed == [8]
    assert main(train_argv(data, tmp_path / "killed", "--save_latest_freq", "4",
                           "--continue_train")) == 0
    assert _images(tmp_path / "killed/tiny") == expected
