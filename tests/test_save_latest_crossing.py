"""--save_latest_freq counts images, and a save happens at the step whose images cross a
multiple of it (the batch need not divide it): with --batch_size 3 and --save_latest_freq 5
the saves are after 6 images (crossing 5), 12 (crossing 10) and 15 (reaching 15), where the
reference's ``images % freq == 0`` would save at 15 only. The same rule places the samples
(--display_freq)."""
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.trainer import _crossed
from helpers.train_helpers import (random_batches, tiny_networks, train_argv,
                                   write_aligned_dataset)
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer


def test_crossed_fires_at_each_step_that_passes_a_multiple():
    images = range(0, 31, 3)   # batch 3
    saved = [after for before, after in zip(images, images[1:]) if _crossed(before, after, 5)]
    assert saved == [6, 12, 15, 21, 27, 30]
    assert [after for after in range(1, 11) if _crossed(after - 1, after, 5)] == [5, 10]
    assert not any(_crossed(before, before + 3, 0) for before in range(0, 30, 3))   # 0: never


def test_a_run_with_a_batch_that_does_not_divide_the_frequency_saves_by_iter(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=6, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--batch_size", "3", "--save_latest_freq", "5",
                      "--save_by_iter", "--n_epochs_decay", "0", "--no_html")
    assert main(argv) == 0   # one epoch of two steps: 3, then 6 images
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("iter_6")["progress"]["images"] == 6
    assert not folder.file("iter_3", "net_G.pth").exists()


def test_a_crossing_at_an_epochs_last_step_is_saved_once_by_the_epoch_end(tmp_path):
    """2 epochs of 2 steps (4 images each) with --save_latest_freq 4: a crossing at each epoch's
    last step, which the epoch end saves anyway. One save per step (latest_* was saved twice,
    the second save waiting for the first's write); the set kept is the epoch end's, so a resume
    starts the next epoch."""
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), save_latest_freq=4,
                                  save_by_iter=True)
    saved = []
    write = trainer.checkpoints.write

    def counted_write(labels, files, step, **options):
        saved.append((step, list(labels)))
        write(labels, files, step, **options)
    trainer.checkpoints.write = counted_write
    assert trainer.fit(ListLoader(random_batches(2))) == 0
    assert saved == [(2, ["latest", "iter_4"]), (4, ["latest", "iter_8", "2"])]
    folder = CheckpointFolder(tmp_path, "run")
    progress = folder.load_train_state("iter_4")["progress"]
    assert (progress["epoch"], progress["epoch_batches"]) == (2, 0)


def test_a_checkpoint_request_at_a_step_saved_anyway_saves_it_once(tmp_path, monkeypatch):
    """A SIGUSR1 / SIGUSR2 request at a --save_latest_freq crossing, or at an epoch's last step
    (which the epoch end saves), is that save: latest_* was saved twice at the step, the second
    save waiting for the first's write. Elsewhere the request saves."""
    from fastp2p.train.stop_requests import StopRequests

    trainer, lines = stand_in_trainer(tmp_path, *tiny_networks(), save_latest_freq=4,
                                      n_epochs=1, n_epochs_decay=0)
    monkeypatch.setattr(StopRequests, "take_checkpoint_request", lambda self: "SIGUSR1")
    saved = []
    write = trainer.checkpoints.write

    def counted_write(labels, files, step, **options):
        saved.append(step)
        write(labels, files, step, **options)
    trainer.checkpoints.write = counted_write
    assert trainer.fit(ListLoader(random_batches(3))) == 0   # 2 images a step: 2, 4, 6
    # step 1: the request's save; step 2: the crossing of 4; step 3: the epoch end's
    assert saved == [1, 2, 3]
    assert sum("SIGUSR1 received" in line for line in lines) == 3
