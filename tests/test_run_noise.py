"""What a run prints and chooses by itself: threads and loader workers from the usable cores,
plain progress lines when the output is not a terminal, a loss plot whose legend covers no
curve."""
import io
import math

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.cpu_threads import choose_threads
from fastp2p.train.progress import (PlainProgress, TerminalProgress, TimeLeftEstimate,
                                     progress_bar, time_left)
from fastp2p.train.loss_log import LossLog
from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
def test_default_workers_and_threads_fit_the_usable_cores(cores):
    for device in ("cpu", "cuda"):
        choice = choose_threads(device, None, cores=cores, busy=False, environ={})
        # DataLoader warns when workers exceed the usable cores ("suggested max is ...")
        assert choice.loader_workers <= max(cores - 1, 0)
    cpu = choose_threads("cpu", None, cores=cores, busy=False, environ={})
    assert 1 <= cpu.torch_threads and cpu.torch_threads + cpu.loader_workers <= max(cores, 1)


def test_two_cores_load_in_the_main_process_and_yield_a_core_when_busy():
    idle = choose_threads("cpu", None, cores=2, busy=False, environ={})
    busy = choose_threads("cpu", None, cores=2, busy=True, environ={})
    assert (idle.torch_threads, idle.loader_workers) == (2, 0)
    assert (busy.torch_threads, busy.loader_workers) == (1, 0)
    assert "2 usable core(s) -> torch 1 compute thread(s) (auto, machine busy)" in busy.summary
    assert choose_threads("cpu", None, cores=16, busy=False, environ={}).loader_workers == 3


def test_overrides_win():
    chosen = choose_threads("cpu", 3, cores=2, busy=False, environ={})
    assert chosen.loader_workers == 3 and "(--num_threads)" in chosen.summary
    from_env = choose_threads("cpu", None, cores=8, busy=False, environ={"OMP_NUM_THREADS": "1"})
    assert from_env.torch_threads == torch.get_num_threads()  # torch read it at start-up
    assert "(OMP_NUM_THREADS=1)" in from_env.summary
    cuda = choose_threads("cuda", None, cores=8, busy=False, environ={})
    assert cuda.torch_threads == torch.get_num_threads() and cuda.loader_workers == 4


def test_torchrun_processes_share_the_cores(monkeypatch):
    monkeypatch.setattr("fastp2p.cpu_info.usable_cpus", lambda: 8)
    choice = choose_threads("cpu", None, busy=False, environ={"LOCAL_WORLD_SIZE": "4"})
    assert (choice.torch_threads, choice.loader_workers) == (2, 0)


def test_plain_progress_off_a_terminal():
    assert isinstance(progress_bar(stream=io.StringIO(), total=4, desc="epoch 1/2"),
                      PlainProgress)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_bar(stream=Terminal(), total=4), TerminalProgress)
    lines = []
    bar = PlainProgress(total=10, desc="epoch 1/2", unit="step", print_line=lines.append)
    bar.update(5)
    bar.show_read({"img/s": "3.0"}, {"G_L1": "1.000"})
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2: step 5/10, ")
    assert lines[0].endswith("img/s 3.0 G_L1 1.000")


def test_a_run_into_a_pipe_prints_lines_not_bar_frames(tmp_path, capfd):
    """pytest's captured stdout/stderr are not terminals, as a pipe or a log file."""
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt")
    at = argv.index("--num_threads")
    del argv[at:at + 2]  # the default worker choice
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    assert (out + err).count("threads: ") == 1
    assert "worker processes" not in err  # no DataLoader oversubscription warning
    assert out.count(": step ") == 8  # --log-every 1, 4 steps x 2 epochs: one line each


def test_loss_plot_legend_covers_no_curve():
    log = LossLog.__new__(LossLog)
    log.rows = [{"step": i, "G_GAN": 1 + 4 * i / 60, "G_L1": 55 - i / 6,
                 "D_real": math.exp(-i / 10), "D_fake": math.exp(-i / 12)} for i in range(60)]
    figure = log.figure("run: losses")
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for axis in figure.axes:
            legend = axis.get_legend().get_window_extent(renderer)
            plot_area = axis.get_window_extent(renderer)
            assert not legend.overlaps(plot_area), "the legend sits on the curves"
            assert legend.x1 <= figure.bbox.x1  # and is not cut off
    finally:
        import matplotlib.pyplot as plt
        plt.close(figure)


@pytest.mark.parametrize("seconds, said", [(0.4, "0s"), (59, "59s"), (60, "1m00s"),
                                           (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m"),
                                           (7625, "2h07m")])
def test_time_left_reads_at_a_glance(seconds, said):
    assert time_left(seconds) == said


def test_time_left_counts_what_recurs_every_epoch_once_a_whole_epoch_has_run():
    """Steps at 1 s each (the reads' speed) and 20 s of work at each epoch's end (its checkpoint,
    sample, page), which no read's speed counts: 3 s a step once a whole epoch has run."""
    estimate = TimeLeftEstimate()
    estimate.epoch_started(100.0, steps_run=0, whole=False)   # a resume, 5 batches from its end
    assert estimate.seconds_left(15, steps_per_s=1.0) == 15   # the read's speed
    # 5 s of steps and the end's 20 s: a rest of an epoch, whose end weighs on fewer steps
    estimate.epoch_started(125.0, steps_run=5, whole=True)
    assert estimate.seconds_left(15, steps_per_s=1.0) == 15
    estimate.epoch_started(155.0, steps_run=15, whole=True)   # 10 s of steps, 20 s of its end
    assert estimate.seconds_left(15, steps_per_s=1.0) == 45
    assert estimate.seconds_left(15, steps_per_s=0.0) == 45
    assert TimeLeftEstimate().seconds_left(15, steps_per_s=0.0) is None   # no speed yet


def test_an_epoch_that_ran_no_step_is_no_measure():
    """An epoch whose batches all went unrun (every one skipped, say) ends with as many steps
    run as it started with: its time is no time per step (it divided by zero)."""
    estimate = TimeLeftEstimate()
    estimate.epoch_started(100.0, steps_run=5, whole=True)
    estimate.epoch_started(130.0, steps_run=5, whole=True)
    assert estimate.seconds_left(15, steps_per_s=1.0) == 15   # still the read's speed
