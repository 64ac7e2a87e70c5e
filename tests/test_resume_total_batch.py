"""A resume on another number of processes changes the images of a step (--batch_size x
processes) without a word, where every other change a resume makes is said: one line says it."""
from fastp2p.cli import main
from fastp2p.train.position import Progress
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset
from helpers.trainer_stand_ins import stand_in_trainer


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


def test_a_state_that_records_the_processes_and_not_the_batch_size_gets_no_line(tmp_path):
    """train_state_check lets an older state leave batch_size out (None) and record world_size:
    the note raised TypeError multiplying None."""
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks())
    trainer.progress = Progress(epoch=1, epoch_batches=0, images=0, epoch_images=0,
                                batch_size=None, world_size=2)
    assert trainer.total_batch_changed_note() is None
