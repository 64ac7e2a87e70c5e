"""Checkpoints and samples are written on a background thread (issue 19, item 3): the step loop
goes on while a save is written, the files hold the weights of the step that saved, a failed
background write is the usual one-line error with exit code 1 and leaves the previous set, and
every way out of training lets the writer finish first. CPU, tiny runs."""
import errno
import hashlib
import os
import signal
import threading
import time

import pytest
import torch

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.background_writer import BackgroundWriter, host_copy
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine, unwrap
from helpers.train_helpers import train_argv, write_aligned_dataset

HANG_GUARD_S = 120   # only ends a test that would otherwise hang; never reached when it passes


def _count_steps(monkeypatch, after_step=None):
    """Patch the engine step to record each step's count, then call ``after_step(engine)``."""
    original, steps = Pix2PixEngine.step, []

    def step(self, real_A, real_B):
        original(self, real_A, real_B)
        steps.append(self.steps)
        if after_step is not None:
            after_step(self)
    monkeypatch.setattr(Pix2PixEngine, "step", step)
    return steps


def _slow_writes(monkeypatch):
    """Every checkpoint write first sleeps: still in flight when the loop moves on or ends."""
    real_write = CheckpointFolder.write

    def slow_write(self, labels, snapshot, step=0, **options):
        time.sleep(0.5)
        real_write(self, labels, snapshot, step, **options)
    monkeypatch.setattr(CheckpointFolder, "write", slow_write)


def _stored_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.name.endswith((".pth", ".json")) and not path.name.startswith(".")}


def test_the_loop_steps_on_while_a_save_is_written_and_the_set_holds_the_saving_step(
        tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    at_step_2, released, waited = {}, threading.Event(), []

    def after_step(engine):
        if engine.steps == 2:   # the weights the save at image 2 must hold
            at_step_2["G"] = {k: v.clone() for k, v in unwrap(engine.netG).state_dict().items()}
        if engine.steps == 4:   # two steps ran (updating the weights in place) during the write
            released.set()
    _count_steps(monkeypatch, after_step)
    real_write = CheckpointFolder.write

    def slow_write(self, labels, snapshot, step=0, **options):
        if step == 2:
            waited.append(released.wait(HANG_GUARD_S))
        real_write(self, labels, snapshot, step, **options)
    monkeypatch.setattr(CheckpointFolder, "write", slow_write)

    argv = train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "2", "--save_by_iter")
    assert main(argv) == 0
    assert waited == [True]   # a write on the loop's thread would have waited for ever
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("iter_2")["progress"]["images"] == 2   # manifest-checked
    saved = torch.load(folder.file("iter_2", "net_G.pth"), weights_only=True)
    assert saved.keys() == at_step_2["G"].keys()
    changed = [key for key in saved if not torch.equal(saved[key], at_step_2["G"][key])]
    assert not changed
    latest_G = torch.load(folder.file("latest", "net_G.pth"), weights_only=True)
    assert any(not torch.equal(latest_G[k], saved[k]) for k in saved)   # steps 3+ did train


def test_a_failed_background_write_exits_1_at_the_next_save_and_keeps_the_previous_set(
        tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")
    assert main(argv) == 0
    folder = tmp_path / "ckpt" / "tiny"
    before = _stored_files(folder)
    steps = _count_steps(monkeypatch)
    writers = []

    def disk_full(obj, handle):
        writers.append(threading.current_thread() is threading.main_thread())
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "latest_net_G.pth"))
    monkeypatch.setattr(checkpoints_module.torch, "save", disk_full)
    capsys.readouterr()
    # resumed at step 4; latest is saved after every step: the first save (step 5) fails
    code = main(argv + ["--continue_train", "--n_epochs", "3", "--save_latest_freq", "1"])
    assert code == 1
    assert writers == [False]   # written on the writer thread, and nothing written after it
    assert steps[-1] <= 6       # the failure ended the run at the next save at the latest
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith("fastp2p train: error:")]
    assert len(lines) == 1, captured
    assert "latest_net_G.pth: No space left on device" in lines[0]
    assert "the previous checkpoint files are unchanged" in lines[0]
    assert _stored_files(folder) == before
    assert not list(folder.glob(".*.pth"))


@pytest.mark.parametrize("how", ["end", "signal"])
def test_every_way_out_waits_for_the_last_write(tmp_path, monkeypatch, capsys, how):
    data = write_aligned_dataset(tmp_path / "data")
    _slow_writes(monkeypatch)
    if how == "signal":
        _count_steps(monkeypatch, lambda engine: engine.steps == 3
                     and os.kill(os.getpid(), signal.SIGTERM))
    code = main(train_argv(data, tmp_path / "ckpt"))
    images = {"end": 8, "signal": 3}[how]
    assert code == (0 if how == "end" else 128 + signal.SIGTERM)
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("latest")["progress"]["images"] == images
    files = folder.manifest("latest")["files"]
    assert len(files) == 3
    for name, entry in files.items():   # complete, and the files the manifest records
        assert hashlib.sha256((folder.path / name).read_bytes()).hexdigest() == entry["sha256"]
    assert not list(folder.path.glob(".*"))
    assert list((folder.path / "web" / "images").glob("*_fake_B.png"))


def test_a_failed_write_of_the_signal_save_is_reported_not_claimed(tmp_path, monkeypatch,
                                                                   capsys):
    data = write_aligned_dataset(tmp_path / "data")

    def disk_full(obj, handle):
        time.sleep(0.2)   # fails after the loop has moved on
        raise OSError(errno.ENOSPC, "No space left on device", "latest_net_G.pth")
    monkeypatch.setattr(checkpoints_module.torch, "save", disk_full)
    _count_steps(monkeypatch, lambda engine: engine.steps == 3
                 and os.kill(os.getpid(), signal.SIGTERM))
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "SIGTERM received" not in err
    assert not list((tmp_path / "ckpt" / "tiny").glob("*.pth"))


def test_a_nonfinite_stop_reports_the_save_that_was_in_flight(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    _slow_writes(monkeypatch)

    def poison_at_step_6(engine):
        if engine.steps == 6:
            batch_norm = next(m for m in engine.netG.modules()
                              if isinstance(m, torch.nn.BatchNorm2d))
            batch_norm.running_var[0] = float("inf")
    _count_steps(monkeypatch, poison_at_step_6)
    # saves at images 3 and 4 (the second still being written at step 6), refused at 6
    assert main(train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "3",
                           "--n_epochs", "2", "--n_epochs_decay", "0",
                           "--display_freq", "100")) == 1   # no sample to wait behind
    assert "(step 4) is unchanged" in capsys.readouterr().err
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("latest")["progress"]["images"] == 4


# ---- the parts ----------------------------------------------------------------------------

def test_host_copy_owns_its_memory_and_keeps_shared_tensors_shared():
    weight = torch.randn(3, 4).t()             # not contiguous
    state = {"a": weight, "b": [weight, 7], "c": (torch.arange(3), "x")}
    copy = host_copy(state)
    weight.add_(1.0)                            # training goes on in place
    assert not torch.equal(copy["a"], weight) and torch.equal(copy["a"] + 1.0, weight)
    assert copy["a"].is_contiguous() and copy["b"][0] is copy["a"] and copy["b"][1] == 7
    assert isinstance(copy["c"], tuple) and copy["c"][1] == "x"


def test_writer_runs_jobs_in_order_and_raises_a_failure_before_the_next_job():
    writer, done = BackgroundWriter(), []
    writer.submit(lambda: done.append(1))
    writer.submit(lambda: done.append(2), in_flight=3)
    writer.wait()
    assert done == [1, 2]

    def fail():
        raise OSError(errno.EIO, "Input/output error")
    writer.submit(fail)
    with pytest.raises(OSError, match="Input/output error"):
        writer.submit(lambda: done.append(3))   # waits for the failed one: 3 never runs
    writer.close()
    assert done == [1, 2]


@pytest.mark.cuda
def test_host_copy_of_cuda_tensors_is_pinned_complete_and_owns_its_memory():
    weight = torch.randn(1024, 1024, device="cuda")
    expected = weight.cpu()
    copy = host_copy({"w": weight, "again": weight})
    weight.add_(1.0)   # queued after the copies: must not reach them
    torch.cuda.synchronize()
    assert copy["w"].device.type == "cpu" and copy["w"].is_pinned()
    assert torch.equal(copy["w"], expected) and copy["again"] is copy["w"]


def test_a_failed_job_marks_the_writer_failed_and_close_drops_the_jobs():
    """``failed`` (the trainer's cue to report no more) is set by the failure itself, and
    ``close`` leaves no job behind whose error a later ``wait`` would raise."""
    writer = BackgroundWriter()

    def fails():
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(fails)
    writer.close()
    assert writer.failed
    writer.wait()


def test_a_failed_job_is_raised_before_the_next_one_runs_whatever_may_queue():
    """A sample or page job (in_flight 3, which need not wait for the failed one) after a
    failed save: the failure is raised at that submit and the job never runs. Dropping the
    check ran it, and the error waited for the next wait()."""
    writer, ran = BackgroundWriter(), []

    def fails():
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(fails)
    while not writer._pending[0].done():
        time.sleep(0.01)
    with pytest.raises(OSError, match="No space left"):
        writer.submit(lambda: ran.append(1), in_flight=3)
    writer.wait()
    writer.close()
    assert ran == []


def test_an_interrupt_as_the_writer_thread_starts_loses_no_job(monkeypatch):
    """A second Ctrl-C landing in the writer's first submit, as the pool started its thread,
    left the thread unknown to the pool: close returned while it wrote the job (a checkpoint),
    and the run let go of its folder. Then the thread, idle, ended only with the pool, which
    the kept exception's frames hold (a notebook's sys.last_value): the process hung at exit."""
    writer, closed, written = BackgroundWriter(), threading.Event(), []
    start, started = threading.Thread.start, []

    def start_then_interrupted(thread):   # the signal lands in start's wait for the thread
        start(thread)
        started.append(thread)
        raise KeyboardInterrupt
    monkeypatch.setattr(threading.Thread, "start", start_then_interrupted)
    # kept, as sys.last_value keeps it; the job takes long enough for close to come first
    with pytest.raises(KeyboardInterrupt) as kept:
        writer.submit(lambda: (time.sleep(0.2), written.append(closed.is_set())))
    monkeypatch.undo()
    writer.close()
    closed.set()
    started[0].join(HANG_GUARD_S)   # whatever job that thread was given is done
    assert True not in written      # none was written once close had returned
    left_running = started[0].is_alive()
    del kept   # a thread left running would otherwise hold up pytest's exit too
    assert not left_running


@pytest.mark.parametrize("waits", [BackgroundWriter.wait, lambda writer: writer.submit(int)],
                         ids=["wait", "submit"])
def test_an_interrupted_wait_leaves_the_job_to_the_next(monkeypatch, waits):
    """A second Ctrl-C landing as wait (or a submit, for the save in flight) waited took the
    job off the list first: the next wait returned at once, and the job's failure was lost."""
    writer, go_on = BackgroundWriter(), threading.Event()

    def fails_once_let_go():
        go_on.wait(HANG_GUARD_S)
        raise OSError(errno.ENOSPC, "No space left on device")
    writer.submit(fails_once_let_go)
    wait = threading.Condition.wait

    def interrupted_in_the_main_thread(condition, timeout=None):   # as the signal handler
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        return wait(condition, timeout)
    monkeypatch.setattr(threading.Condition, "wait", interrupted_in_the_main_thread)
    with pytest.raises(KeyboardInterrupt):
        waits(writer)
    monkeypatch.undo()
    go_on.set()
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    writer.close()
