"""The training loop's state that no loss curve shows, driven directly (a Trainer over lists of
random batches, no CLI): torch's RNG stream across a resume, the images/s of the epoch's last
read, the position a multi-process run saves, the non-finite stop's advice, and the writer
thread ended on every way out of ``fit``."""
import signal
import threading

import pytest
import torch

from fastp2p.reference import NLayerDiscriminator, UnetGenerator, get_norm_layer, init_weights
from fastp2p.train import trainer as trainer_module
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import Clock, ListLoader, stand_in_trainer


def _reference_networks_with_dropout():
    """The reference U-Net (6 levels at 64x64: one level has torch's nn.Dropout, which draws
    from torch's global RNG) and PatchGAN."""
    torch.manual_seed(0)
    netG = init_weights(UnetGenerator(3, 3, 6, ngf=4, norm_layer=get_norm_layer("batch"),
                                      use_dropout=True))
    netD = init_weights(NLayerDiscriminator(6, ndf=4, n_layers=2,
                                            norm_layer=get_norm_layer("batch")))
    return netG, netD


def test_a_resume_continues_torchs_rng_stream_as_the_uninterrupted_run(tmp_path):
    """The epoch's data iterator draws from torch's RNG when it starts; the interrupted run did
    that before it saved, so the resumed run restores the saved state once more after starting
    it. Without that, the dropout masks of every step after the resume differ."""
    batches = random_batches(3, batch_size=1, size=64)
    torch.manual_seed(7)
    straight, _ = stand_in_trainer(tmp_path / "straight", *_reference_networks_with_dropout())
    assert straight.fit(ListLoader(batches)) == 0

    torch.manual_seed(7)
    netG, netD = _reference_networks_with_dropout()
    stopped, _ = stand_in_trainer(tmp_path / "resumed", netG, netD)
    assert stopped.fit(ListLoader(batches, stop_in_step=1)) == 128 + signal.SIGINT
    state = stopped.checkpoints.load_train_state("latest")
    assert state["progress"]["epoch_batches"] == 2

    torch.manual_seed(12345)   # a new process: torch's RNG is anywhere
    resumed, _ = stand_in_trainer(tmp_path / "resumed", netG, netD)   # the saved weights, in memory
    resumed.resume(state)
    assert resumed.fit(ListLoader(batches)) == 0
    assert resumed.steps_run == 4 and resumed.engine.steps == straight.engine.steps == 6
    for a, b in zip(straight.netG.state_dict().values(), netG.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("world_size", [1, 2])
def test_the_epochs_last_read_counts_the_images_since_the_read_before(tmp_path, monkeypatch,
                                                                      world_size):
    monkeypatch.setattr(trainer_module, "time", Clock(tick=3.0))
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), world_size=world_size, log_every=2,
                          n_epochs_decay=0)
    rates = []

    class RateTracker:   # what each read reports
        def log_scalars(self, step, values):
            rates.append(values["images_per_s"])

        def log_images(self, step, images):
            pass
    trainer.report_to(trackers=[RateTracker()])
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2))) == 0
    # a read after 2 steps (4 images a process), then the epoch's end reads its last step (2);
    # each 3 s after its window started; images/s of all processes together
    assert rates == [4 * world_size / 3, 2 * world_size / 3]


def test_a_multi_process_run_saves_its_process_count_and_counts_every_processs_images(
        tmp_path):
    # not initialised as a process group: the loss means over processes are the losses
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), world_size=2, n_epochs_decay=0)
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2))) == 0
    saved = trainer.checkpoints.load_train_state("latest")["progress"]
    assert (saved["batch_size"], saved["world_size"]) == (2, 2)
    assert trainer.progress.images == 3 * 2 * 2


@pytest.mark.parametrize("precision,hinted", [("bf16", True), ("fp32", False)])
def test_a_nonfinite_stop_suggests_fp32_only_to_a_run_in_another_precision(
        tmp_path, precision, hinted):
    # the engine runs in fp32 here (bf16 needs CUDA); the advice follows the run's option
    trainer, lines = stand_in_trainer(tmp_path, *tiny_networks(), precision=precision)
    trainer.engine.first_nonfinite_step = lambda: 2
    assert trainer.fit(ListLoader(random_batches(3))) == 1
    assert "a loss became NaN or Inf at step 2 (epoch 1)" in lines[-1]
    assert lines[-1].endswith("Lower --lr (or --lambda_L1) or check the data"
                              + (", or try --precision fp32" if hinted else ""))


def _writer_threads():
    return {thread for thread in threading.enumerate() if thread.is_alive()
            and thread is not threading.main_thread()}


@pytest.mark.parametrize("way_out", ["end", "signal", "error"])
def test_fit_ends_the_writer_thread_on_every_way_out(tmp_path, way_out):
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), n_epochs_decay=0)
    before = _writer_threads()
    loader = ListLoader(random_batches(3), stop_in_step=1 if way_out == "signal" else None)
    if way_out == "error":   # an error fit does not handle: raised, after the writer ends
        step = trainer.engine.step
        trainer.engine.step = lambda A, B: (step(A, B), trainer.engine.steps == 2
                                            and _raise(RuntimeError("a bug")))
        with pytest.raises(RuntimeError, match="a bug"):
            trainer.fit(loader)
    else:
        assert trainer.fit(loader) == (0 if way_out == "end" else 128 + signal.SIGINT)
    assert trainer.writer._pool is None
    assert _writer_threads() <= before


def _raise(error):
    raise error
