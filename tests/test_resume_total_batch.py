"""A resume on another number of processes changes the images of a step (--batch_size x
processes) without a word, where every other change a resume makes is said: one line says it."""
from fastp2p.cli import main
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import train_argv, write_aligned_dataset


def _as_if_saved_by_two_processes(monkeypatch):
    resume = Trainer.resume

    def resume_saved_by_two(self, state, loader=None):
        resume(self, state, loader)
        self.progress.world_size = 2
    monkeypatch.setattr(Trainer, "resume", resume_saved_by_two)


def test_a_resume_on_fewer_processes_says_the_step_batch_changes(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0", "--no_html")
    assert main(argv) == 0
    capsys.readouterr()
    _as_if_saved_by_two_processes(monkeypatch)
    assert main(argv + ["--n_epochs", "2", "--continue_train"]) == 0   # (the last one counts)
    out = capsys.readouterr().out
    assert ("--continue_train: the run trained on 2 process(es) and this one on 1: a step's "
            "batch goes from 1 x 2 = 2 to 1 x 1 = 1 images (the lr stays as scheduled)\n") in out
