"""The training layer's small helpers, each called directly: what the end-to-end runs that use
them leave unchecked (found by mutating each helper; every test here fails against one such
change). Progress lines, loader-worker deaths, out-of-memory errors, thread choices, the
options file, --netG names, early refusals, stage times, the engine state check, test scores,
trackers and the torchrun helpers usable on a CPU."""
import argparse
import io
import math
import random
import signal
import sys
import types

import pytest
import torch

from fastp2p.cpu_info import most_loader_workers
from fastp2p.train import cpu_threads, progress, stage_times
from fastp2p.train.cpu_threads import choose_threads, local_processes
from fastp2p.train.early_refusals import refused_at_once
from fastp2p.train.engine_state import check_engine_state, dropout_stream_owner
from fastp2p.train.evaluation import L1Scores
from fastp2p.train.loader_failures import loader_worker_death
from fastp2p.train.memory_errors import first_line, is_out_of_memory
from fastp2p.train.progress import PlainProgress, TerminalProgress, progress_bar
from fastp2p.train.saved_options import RESUME_COMPARED, changed_options, write_options
from fastp2p.train.stage_times import StageTimes
from fastp2p.train.stop_requests import SecondStopRequest, StopRequests, TrainingStopped
from fastp2p.train.unet_names import unet_levels
from helpers.train_helpers import write_aligned_dataset


class _Terminal(io.StringIO):
    def isatty(self):
        return True


# --- progress ---------------------------------------------------------------------------------

def test_the_bar_goes_to_stderr_by_default_and_draws_on_the_stream_given(monkeypatch):
    """stdout piped, stderr a terminal: tqdm's bar on stderr; the other way round: lines."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert isinstance(progress_bar(total=3), TerminalProgress)
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(total=3), PlainProgress)
    terminal, elsewhere = _Terminal(), _Terminal()
    monkeypatch.setattr(sys, "stderr", elsewhere)
    bar = progress_bar(stream=terminal, total=3, desc="epoch 1/1")
    bar.update(2)
    bar.close()
    assert "epoch 1/1" in terminal.getvalue() and elsewhere.getvalue() == ""


def test_plain_progress_counts_from_its_initial_step_and_times_from_its_start(monkeypatch):
    now = [50.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    lines = []
    bar = PlainProgress(total=None, initial=7, desc="epoch 3/4", unit="step",
                        print_line=lines.append)
    now[0] += 12.4
    bar.update(3)
    bar.show_read({}, {"G_L1": "0.250"})
    bar.close()
    assert lines == ["epoch 3/4: step 10, 12 s in this epoch, G_L1 0.250"]   # no total: no "/N"


# --- loader worker deaths -----------------------------------------------------------------------

def _worker_error(first: str, *more: str, cause=None, context=None) -> RuntimeError:
    err = RuntimeError("\n".join((first, *more)))
    err.__cause__, err.__context__ = cause, context
    return err


def test_an_error_not_about_a_loader_worker_is_left_alone():
    assert loader_worker_death(RuntimeError("DataLoader timed out after 5 seconds"), "x") is None
    assert loader_worker_death(RuntimeError("CUDA error: DataLoader worker"), "x") is None


# "Bus error": an image file cut short while Pillow maps it; it was said as out of memory, from
# when a full /dev/shm killed a worker so (now torch's error, said as SharedMemoryFull)
@pytest.mark.parametrize("name", ["Segmentation fault", "Aborted", "Floating point exception",
                                  "Illegal instruction", "Bus error"])
def test_a_worker_that_crashed_is_not_called_out_of_memory(name):
    err = _worker_error(f"DataLoader worker (pid 12) is killed by signal: {name}. ",
                        "second line of torch's report")
    line = loader_worker_death(err, "run again")
    assert line.startswith(f"a data loader worker died (DataLoader worker (pid 12) is killed by "
                           f"signal: {name}.), the worker crashed ({name}), not out of memory")
    assert line.endswith("`fastp2p pack`, then run again") and "second line" not in line


def test_a_worker_killed_for_memory_says_lower_num_threads():
    err = _worker_error("DataLoader worker (pid 9) is killed by signal: Killed. ")
    assert loader_worker_death(err, "resume").endswith(
        ", probably out of memory: lower --num_threads, then resume")


def test_a_worker_stopped_from_outside_is_told_apart():
    err = _worker_error("DataLoader worker (pid 9) is killed by signal: Hangup. ")
    assert loader_worker_death(err, "resume").endswith(
        ", stopped by a signal (Hangup) from outside this run, not out of memory: resume")


@pytest.mark.parametrize("link", ["cause", "context"])
def test_the_signal_is_found_in_the_errors_causes(link):
    """torch raises "exited unexpectedly" from the error that names the signal."""
    named = _worker_error("DataLoader worker (pid 3) is killed by signal: Segmentation fault. ")
    err = _worker_error("DataLoader worker (pid(s) 3) exited unexpectedly", **{link: named})
    line = loader_worker_death(err, "run again")
    assert "(DataLoader worker (pid 3) is killed by signal: Segmentation fault.)" in line
    assert "the worker crashed (Segmentation fault)" in line


def test_an_unexpected_exit_without_a_signal_names_the_first_error():
    inner = _worker_error("something below")
    err = _worker_error("DataLoader worker (pid(s) 3) exited unexpectedly", "more", cause=inner)
    assert loader_worker_death(err, "resume") == (
        "a data loader worker died (DataLoader worker (pid(s) 3) exited unexpectedly), "
        "probably out of memory: lower --num_threads, then resume")


def test_a_cycle_of_causes_ends():
    first = _worker_error("DataLoader worker (pid(s) 3) exited unexpectedly")
    second = _worker_error("DataLoader worker (pid 3) is killed by signal: Aborted. ",
                           cause=first)
    first.__cause__ = second
    assert "the worker crashed (Aborted)" in loader_worker_death(first, "resume")


# --- out of memory -------------------------------------------------------------------------

def test_out_of_memory_is_told_from_other_errors():
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 99 bytes"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert not is_out_of_memory(RuntimeError("could not allocate the descriptor"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_first_line_of_an_error():
    assert first_line(RuntimeError("\n  CUDA out of memory.\nTried to allocate 2 GiB")) == \
        "CUDA out of memory."
    assert first_line(MemoryError()) == "MemoryError"


# --- CPU threads ------------------------------------------------------------------------------

def test_thread_choices_at_their_edges(monkeypatch):
    assert most_loader_workers(2) == 4 and most_loader_workers(12) == 12
    assert local_processes({"LOCAL_WORLD_SIZE": "3"}) == 3 and local_processes({}) == 1
    three = choose_threads("cpu", None, cores=3, busy=False, environ={})
    assert (three.torch_threads, three.loader_workers) == (2, 1)
    eight = choose_threads("cpu", None, cores=8, busy=False, environ={})
    assert (eight.torch_threads, eight.loader_workers) == (6, 2)
    cuda = choose_threads("cuda", None, cores=3, busy=False, environ={})
    assert cuda.loader_workers == 2
    blank = choose_threads("cpu", None, cores=4, busy=False, environ={"OMP_NUM_THREADS": " "})
    assert "(auto)" in blank.summary and blank.torch_threads == 3
    mkl = choose_threads("cpu", None, cores=4, busy=False, environ={"MKL_NUM_THREADS": "2"})
    assert "(MKL_NUM_THREADS=2)" in mkl.summary


def test_packed_readers_are_at_least_one_and_follow_num_threads_on_cuda(monkeypatch):
    cpu = choose_threads("cpu", None, packed=True, cores=2, busy=False, environ={})
    assert (cpu.packed_readers, cpu.loader_workers) == (1, 0)
    assert "1 packed-data reader thread(s) (auto, at least one)" in cpu.summary
    cuda = choose_threads("cuda", 3, packed=True, cores=16, busy=False, environ={})
    assert cuda.packed_readers == 3 and "(--num_threads)" in cuda.summary


def test_the_machine_counts_as_busy_from_a_load_equal_to_its_cores(monkeypatch):
    monkeypatch.setattr(cpu_threads.os, "getloadavg", lambda: (4.0, 0.0, 0.0))
    cpu_threads._machine_busy.cache_clear()
    try:
        assert cpu_threads._machine_busy(4) and not cpu_threads._machine_busy(5)
    finally:
        cpu_threads._machine_busy.cache_clear()


def test_apply_thread_choice_sets_torchs_threads():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    try:
        cpu_threads.apply_thread_choice(cpu_threads.ThreadChoice(other, 0, ""))
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)


# --- the options file -------------------------------------------------------------------------

def _options(**values) -> argparse.Namespace:
    base = dict(dataroot="d", direction="AtoB", lr=0.0002, max_dataset_size=64, no_flip=False,
                seed=0, name="run: one")
    return argparse.Namespace(**{**base, **values})


def test_the_options_file_is_sorted_and_leaves_out_the_command(tmp_path):
    path = tmp_path / "train_opt.txt"
    write_options(_options(run=print), path)
    *lines, end = path.read_text().splitlines()   # ended as the reference ends its file
    assert end == "----------------- End -------------------"
    assert lines == sorted(lines) and lines[0] == "dataroot: d" and "name: run: one" in lines
    assert not any(line.startswith("run:") for line in lines)


def test_changed_options_name_each_change_old_to_new(tmp_path):
    path = tmp_path / "train_opt.txt"
    write_options(_options(), path)
    assert {"direction", "seed", "lr"} <= set(RESUME_COMPARED)
    later = _options(direction="BtoA", seed=3, lr=2e-4, max_dataset_size=64.0)
    assert changed_options(later, path, RESUME_COMPARED) == \
        "--direction AtoB -> BtoA, --seed 0 -> 3"
    assert changed_options(later, path, ["name"]) == ""          # "run: one": split once
    assert changed_options(_options(no_flip=0), path, ["no_flip"]) == "--no_flip False -> 0"
    path.write_text("no_flip: 1\n")                               # a flag is no number
    assert changed_options(_options(no_flip=True), path, ["no_flip"]) == "--no_flip 1 -> True"
    path.write_bytes(b"seed: \xff\n")
    assert changed_options(later, path, ["seed"]) == ""          # not UTF-8: no comparison


# --- --netG and the early refusals ------------------------------------------------------------

def test_unet_names():
    assert [unet_levels(f"unet_{2 ** k}") for k in (5, 7, 8, 10)] == [5, 7, 8, 10]
    for name in ("unet_16", "unet_96", "unet_", "net_256", "unet_256_x", "my_unet_256"):
        with pytest.raises(ValueError, match="power of two >= 32") as refused:
            unet_levels(name)
        assert "ResNet" not in str(refused.value)
    with pytest.raises(ValueError, match="ResNet generators are not provided"):
        unet_levels("resnet_9blocks")


def test_early_refusals_print_one_line_and_return_their_codes(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    assert refused_at_once(argparse.Namespace(netG="unet_100", dataroot=str(folder)), "test") == 2
    assert capsys.readouterr().err.startswith("fastp2p test: error: --netG must be unet_256")
    missing = argparse.Namespace(netG="unet_32", dataroot=str(tmp_path / "none"))
    assert refused_at_once(missing, "train") == 1
    assert "fastp2p train: error: " in capsys.readouterr().err
    assert refused_at_once(argparse.Namespace(netG=object(), dataroot=str(folder)), "x") is None
    assert refused_at_once(argparse.Namespace(netG="unet_64", dataroot=str(folder)), "x") is None
    assert capsys.readouterr().err == ""


# --- stage times ----------------------------------------------------------------------------

def test_stage_times_of_a_window_with_no_time_and_the_stages_named(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(stage_times.time, "perf_counter", lambda: now[0])
    frozen = StageTimes(skip_steps=1)
    frozen.step_done(2)
    frozen.step_done(2)              # the clock stood still: no window to divide by
    assert frozen.summary() == {} and frozen.describe() == ""
    times = StageTimes(skip_steps=1)
    times.step_done(3)
    with times.stage("data"):
        now[0] += 1.0
    with times.stage("step"):
        now[0] += 3.0
    times.step_done(3)
    assert times.describe() == ("0.8 images/s over 1 step after the first 1; time in "
                                "data 25.0%, step 75.0%")   # stages never entered: not named


# --- the engine state check -----------------------------------------------------------------

def _adam_and_state():
    """An Adam's groups as the engine makes them, and a state of one step for it (random
    moments). Built without torch.optim.Adam's constructor, whose first call imports for
    seconds: the check reads only ``param_groups``."""
    torch.manual_seed(0)
    params = [torch.randn(3, 2), torch.randn(4)]
    settings = dict(lr=0.01, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                    maximize=False, foreach=None, capturable=False, differentiable=False,
                    fused=None, decoupled_weight_decay=False)
    adam = object.__new__(torch.optim.Adam)
    adam.param_groups = [{"params": params, **settings}]
    saved = {"param_groups": [{"params": [0, 1], **settings}],
             "state": {index: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(param),
                               "exp_avg_sq": torch.rand_like(param)}
                       for index, param in enumerate(params)}}
    return adam, saved


def _engine_state(saved, **extra):
    return {"optimizer_G": saved, "optimizer_D": saved, "lr": 0.01, "steps": 1, "rng": {},
            **extra}


def _refusal(saved, counters=None, owners=None, **extra) -> str:
    adam = _adam_and_state()[0]
    with pytest.raises(ValueError) as refused:
        check_engine_state(_engine_state(saved, **extra),
                           {"optimizer_G": adam, "optimizer_D": adam}, counters or {},
                           owners or {})
    return str(refused.value)


def test_an_engine_state_that_fits_passes_and_one_lacking_keys_is_refused():
    adam, saved = _adam_and_state()
    counters = {"loss_sums": torch.zeros(4)}
    check_engine_state(_engine_state(saved, loss_sums=torch.ones(4)),
                       {"optimizer_G": adam, "optimizer_D": adam}, counters, {})
    fresh = {**saved, "state": {}}                              # not stepped at all
    check_engine_state(_engine_state(fresh), {"optimizer_G": adam, "optimizer_D": adam}, {}, {})
    half = {**saved, "state": {0: saved["state"][0], 1: {}}}    # a parameter not stepped yet
    check_engine_state(_engine_state(half), {"optimizer_G": adam, "optimizer_D": adam}, {}, {})
    with pytest.raises(ValueError, match=r"engine state lacks \['rng', 'steps'\]"):
        check_engine_state({"optimizer_G": saved, "optimizer_D": saved, "lr": 0.1},
                           {"optimizer_G": adam, "optimizer_D": adam}, {}, {})
    assert "loss_sums is not a torch.float32 tensor of shape (4,)" in _refusal(
        saved, counters, loss_sums=torch.zeros(4, dtype=torch.float64))


def _with_step(saved, step):
    state = {index: dict(entry) for index, entry in saved["state"].items()}
    state[0]["step"] = step
    return {**saved, "state": state}


@pytest.mark.parametrize("step", [torch.tensor(-1.0), -2, True, torch.tensor(3),
                                  torch.tensor([1.0, 2.0])])
def test_an_adam_step_that_is_no_count_is_refused(step):
    _, saved = _adam_and_state()
    assert "the step of parameter 0 is" in _refusal(_with_step(saved, step))


def test_parameter_indices_that_torch_would_pair_wrongly_are_refused():
    _, saved = _adam_and_state()
    group = dict(saved["param_groups"][0])
    unlisted = {**saved, "state": {**saved["state"], **{i: {} for i in range(2, 10)}}}
    assert "parameter(s) [2, 3, 4, 5, 6] that no group lists" in _refusal(unlisted)
    textual = {**saved, "param_groups": [{**group, "params": ["0", 1]}]}
    assert "list indices that are not integers" in _refusal(textual)
    flagged = {**saved, "param_groups": [{**group, "params": [False, 1]}]}
    assert "list indices that are not integers" in _refusal(flagged)
    text_betas = {**saved, "param_groups": [{**group, "betas": ("0.5", "0.9")}]}
    assert "Adam's betas are ('0.5', '0.9')" in _refusal(text_betas)


def test_dropout_streams_saved_under_the_ddp_wrapper_find_their_module():
    owners = {"netG.model.3": "inner", "netD": "whole"}
    assert dropout_stream_owner(owners, "netG.model.3") == "inner"
    assert dropout_stream_owner(owners, "netG.module.model.3") == "inner"
    assert dropout_stream_owner(owners, "netD.module") == "whole"
    assert dropout_stream_owner(owners, "netG.modulemodel.3") is None
    assert dropout_stream_owner(owners, "netG.model.4") is None
    _, saved = _adam_and_state()
    adam = _adam_and_state()[0]
    check_engine_state(_engine_state(saved, dropout_rng={"netG.module.model.3": None}),
                       {"optimizer_G": adam, "optimizer_D": adam}, {}, owners)


# --- test scores ------------------------------------------------------------------------------

def test_l1_scores_of_the_model_and_both_baselines():
    torch.manual_seed(5)
    pairs = [tuple(torch.rand(1, 3, 4, 4) * 2 - 1 for _ in range(3)) for _ in range(2)]
    mean_image = torch.rand(3, 4, 4) * 2 - 1
    scores = L1Scores(True, mean_image, "the mean of 2 train images")
    assert math.isnan(scores.mean("model"))
    for real_A, fake_B, real_B in pairs:
        scores.add(real_A, fake_B, real_B)
    model = sum((f - b).abs().mean().item() for a, f, b in pairs) / 2
    identity = sum((a - b).abs().mean().item() for a, f, b in pairs) / 2
    constant = sum((mean_image - b[0]).abs().mean().item() for a, f, b in pairs) / 2
    assert scores.mean("model") == pytest.approx(model)
    assert scores.mean("identity") == pytest.approx(identity)
    assert scores.mean("constant") == pytest.approx(constant)
    report = scores.report()
    assert f"(model / constant {model / constant:.2f}; the mean of 2 train images)" in report
    assert f"(model / identity {model / identity:.2f}; fake_B = real_A)" in report
    exact = L1Scores(True)
    exact.add(pairs[0][1] * 0.1, pairs[0][1], pairs[0][1] * 0.1)    # identity L1 0.0...
    assert "(model / identity n/a;" in exact.report()
    small = L1Scores(True)
    real_B = torch.zeros(1, 3, 2, 2)
    small.add(real_B + 0.25, real_B + 0.5, real_B)               # a baseline of 0.25: a ratio
    assert "(model / identity 2.00;" in small.report()


def test_the_train_mean_image_averages_every_pair_as_epoch_0_crops_it(tmp_path):
    from fastp2p.data import create_dataset
    from fastp2p.data.loader import item_rng
    from fastp2p.train import evaluation
    from helpers.data_helpers import data_args

    write_aligned_dataset(tmp_path, pairs=3, size=16, phases=("train",), seed=7)
    args = data_args(tmp_path, "--load_size", "16", "--crop_size", "12")
    args.seed = 4
    dataset = create_dataset(args, "train")
    loads = [dataset.load(i, item_rng(4, 0, i))["B"] for i in range(3)]
    mean, note = evaluation.train_mean_image(args, torch.Size((3, 12, 12)))
    assert note == "the mean of 3 train images"
    assert torch.allclose(mean, sum(loads) / 3, atol=1e-6)
    assert evaluation.train_mean_image(args, torch.Size((3, 8, 8))) == (
        None, "train images are (3, 12, 12), test images (3, 8, 8): no common mean image")


def test_the_train_mean_image_of_a_large_split_takes_evenly_spaced_pairs(tmp_path, monkeypatch):
    from fastp2p.data import create_dataset
    from fastp2p.data.loader import item_rng
    from fastp2p.train import evaluation
    from helpers.data_helpers import data_args

    write_aligned_dataset(tmp_path, pairs=4, size=16, phases=("train",), seed=11)
    args = data_args(tmp_path, "--load_size", "16", "--crop_size", "16", "--no_flip")
    args.seed = 0
    monkeypatch.setattr(evaluation, "MEAN_IMAGE_PAIRS", 2)
    dataset = create_dataset(args, "train")
    mean, note = evaluation.train_mean_image(args, torch.Size((3, 16, 16)))
    assert note == "the mean of 2 train images"
    spaced = [dataset.load(i, item_rng(0, 0, i))["B"] for i in (0, 2)]
    assert torch.allclose(mean, (spaced[0] + spaced[1]) / 2, atol=1e-6)


# --- trackers ---------------------------------------------------------------------------------

def _recording_tracker_modules(monkeypatch, calls, wandb_fails=False):
    class SummaryWriter:
        def __init__(self, log_dir):
            calls.append(("SummaryWriter", log_dir))

        def add_scalar(self, *args):
            calls.append(("add_scalar", *args))

        def add_image(self, label, image, step, dataformats):
            calls.append(("add_image", label, image.shape, image.dtype.name, step, dataformats))

        def close(self):
            calls.append(("close",))

    class Run:
        def log(self, values, step=None):
            calls.append(("log", values, step))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        if wandb_fails:
            raise RuntimeError("wandb: network error")
        calls.append(("init", kwargs))
        return Run()

    tensorboard = types.ModuleType("torch.utils.tensorboard")
    tensorboard.SummaryWriter = SummaryWriter
    wandb = types.ModuleType("wandb")
    wandb.init = init
    wandb.Image = lambda array, caption=None: ("image", array.shape, caption)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tensorboard)
    monkeypatch.setitem(sys.modules, "wandb", wandb)


def _tracker_args(**values):
    return argparse.Namespace(**{"tensorboard": True, "use_wandb": True, "name": "tiny",
                                 "wandb_project_name": "proj", "lambda_L1": 25.0,
                                 "run": print, **values})


def test_trackers_get_each_value_at_its_step_and_are_closed(tmp_path, monkeypatch):
    from fastp2p.train.trackers import close_trackers, open_trackers
    calls = []
    _recording_tracker_modules(monkeypatch, calls)
    trackers = open_trackers(_tracker_args(), tmp_path, "train")
    assert calls[0] == ("SummaryWriter", str(tmp_path / "tensorboard" / "train"))
    init = calls[1][1]
    assert {k: init[k] for k in ("project", "name", "job_type", "dir")} == {
        "project": "proj", "name": "tiny", "job_type": "train", "dir": str(tmp_path)}
    assert init["config"] == {"tensorboard": True, "use_wandb": True, "name": "tiny",
                              "wandb_project_name": "proj", "lambda_L1": 25.0}
    del calls[:]
    for tracker in trackers:
        tracker.log_scalars(7, {"G_L1": 0.75})
        tracker.log_images(7, {"fake_B": torch.rand(3, 4, 6) * 2 - 1})
    close_trackers(trackers)
    assert calls == [("add_scalar", "G_L1", 0.75, 7),
                     ("add_image", "fake_B", (4, 6, 3), "uint8", 7, "HWC"),
                     ("log", {"G_L1": 0.75}, 7),
                     ("log", {"fake_B": ("image", (4, 6, 3), "fake_B")}, 7),
                     ("close",), ("finish",)]


def test_open_trackers_refuses_another_users_linked_folder_before_opening_any(
        tmp_path, monkeypatch):
    from fastp2p.atomic_files import NotAPlainFile
    from fastp2p.train.trackers import open_trackers
    from helpers.link_helpers import as_another_user
    calls = []
    _recording_tracker_modules(monkeypatch, calls)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    link = tmp_path / "run" / "tensorboard" / "train"
    link.symlink_to(tmp_path / "elsewhere")
    as_another_user(monkeypatch, link)
    with pytest.raises(NotAPlainFile, match="made by another user"):
        open_trackers(_tracker_args(), tmp_path / "run", "train")
    assert calls == [] and list((tmp_path / "elsewhere").iterdir()) == []


def test_a_tracker_that_fails_to_open_closes_those_opened(tmp_path, monkeypatch):
    from fastp2p.train.trackers import open_trackers
    calls = []
    _recording_tracker_modules(monkeypatch, calls, wandb_fails=True)
    with pytest.raises(RuntimeError, match="network error"):
        open_trackers(_tracker_args(), tmp_path, "test")
    assert calls == [("SummaryWriter", str(tmp_path / "tensorboard" / "test")), ("close",)]


# --- stop requests ----------------------------------------------------------------------------

def test_real_signals_set_the_flag_then_stop_at_once_and_the_handlers_come_back():
    import os
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with StopRequests("second: stopped") as stops:
        assert all(signal.getsignal(sig) == stops._handle for sig in before)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.signal_number == signal.SIGTERM
        with pytest.raises(SecondStopRequest, match="second: stopped") as second:
            os.kill(os.getpid(), signal.SIGINT)
        assert second.value.exit_code == 130
        os.kill(os.getpid(), signal.SIGINT)           # only recorded from then on
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert stops.signal_number == signal.SIGTERM
    assert TrainingStopped("nan loss", 3).exit_code == 3


# --- packed loader memory ---------------------------------------------------------------------

def _fake_pack():
    return types.SimpleNamespace(shape=(20, 40, 3), config=types.SimpleNamespace(crop_size=16),
                                 phase_dir="packs/train", index={"load_size": 20})


def test_the_loader_memory_check_at_its_bounds(monkeypatch):
    from fastp2p.byte_sizes import binary_size
    from fastp2p.data import packed_loader
    from fastp2p.train import loader_memory, networks

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    memory = [None]
    monkeypatch.setattr(networks, "memory_of", lambda device: (memory[0], "the limit"))
    monkeypatch.setattr(packed_loader, "default_readers", lambda: 5)
    check = loader_memory.check_loader_fits_memory

    def need(batch, device, buffers, dtype=torch.float32):
        return packed_loader.loader_host_bytes((20, 40, 3), batch, 16, buffers=buffers,
                                               device=device, dtype=dtype)
    memory[0] = 2 * need(3, cpu, 4)
    check(_fake_pack(), 3, device=cpu, readers=2, processes=2)          # exactly enough
    memory[0] -= 1
    with pytest.raises(ValueError):
        check(_fake_pack(), 3, device=cpu, readers=2, processes=2)
    memory[0] = need(3, cpu, 4) // 3
    with pytest.raises(ValueError) as refused:
        check(_fake_pack(), 3, device=cpu, readers=2, processes=2)
    assert str(refused.value) == (
        f"packs/train: packed at load_size 20 (20x40x3 pairs, {binary_size(2400)} each), "
        f"--batch_size 3: the packed loader's 4 batches read ahead need at least "
        f"{binary_size(2 * need(3, cpu, 4))} of host memory, times 2 processes of this torchrun "
        f"job, more than the limit ({binary_size(memory[0])}); lower --batch_size, or repack at "
        "a smaller --load_size")
    memory[0] = need(3, cpu, 7)                      # default readers: 5, so 7 buffers
    check(_fake_pack(), 3, device=cpu, readers=None)
    with pytest.raises(ValueError, match="the packed loader's 7 batches"):
        check(_fake_pack(), 4, device=cpu, readers=None)
    memory[0] = need(3, cuda, 4)                     # no reader-side crops on CUDA
    check(_fake_pack(), 3, device=cuda, readers=2)
    memory[0] = need(3, cpu, 4)
    assert need(3, cpu, 4, torch.bfloat16) > memory[0]
    with pytest.raises(ValueError):
        check(_fake_pack(), 3, device=cpu, readers=2, dtype=torch.bfloat16)


# --- torchrun helpers on a CPU ----------------------------------------------------------------

def test_a_single_process_resolves_its_device_without_a_process_group(monkeypatch):
    """No GPU is touched: torch.device("cuda", N) is only a name until used."""
    from fastp2p.train import distributed
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto") == torch.device("cpu")
    assert distributed.launched_world_size() == 1 and distributed.launched_local_rank() == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.resolve_device("auto", 1) == torch.device("cuda", 1)
    assert distributed.init_processes("cuda:3") == distributed.ProcessInfo(
        0, 1, torch.device("cuda", 3))
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.launched_world_size() == 3


def test_devices_other_than_cpu_and_cuda_are_refused():
    from fastp2p.train.distributed import resolve_device
    assert resolve_device("cpu", 3) == torch.device("cpu")
    for name in ("meta", "mps", "gpu"):
        with pytest.raises(ValueError, match="--device must be auto, cpu, cuda or cuda:N"):
            resolve_device(name)


def test_syncbatch_on_a_cpu_job_is_refused_before_wrapping():
    from fastp2p.train.distributed import ProcessInfo, wrap_for_data_parallel
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert wrap_for_data_parallel(net, ProcessInfo(0, 1, torch.device("cpu")), True) is net
    with pytest.raises(ValueError, match="--norm syncbatch needs CUDA devices"):
        wrap_for_data_parallel(net, ProcessInfo(1, 2, torch.device("cpu")), True)
    assert ProcessInfo(0, 2, torch.device("cpu")).is_main
    assert not ProcessInfo(1, 2, torch.device("cpu")).is_main


def test_each_rank_shifts_its_dropout_seeds_and_ddp_leaves_them_alone():
    from fastp2p.train.distributed import _give_each_rank_its_dropout_stream

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU()))
    seeds = {"": 0xFFFFFFFE, "1.0": random.randrange(1 << 30)}
    for name, seed in seeds.items():
        net.get_submodule(name).register_buffer("dropout_rng", torch.tensor([seed, 17]))
    _give_each_rank_its_dropout_stream(net, 3)
    assert net.dropout_rng.tolist() == [1, 17]              # wrapped at 32 bits
    assert net[1][0].dropout_rng.tolist() == [seeds["1.0"] + 3, 17]
    assert sorted(net._ddp_params_and_buffers_to_ignore) == ["1.0.dropout_rng", "dropout_rng"]



class _TwoRanks:
    """torch.distributed as rank ``rank`` of two sees it: the other rank holds ``other``
    (its values to sum, its broadcast value)."""

    def __init__(self, rank, other):
        self.rank, self.other, self.calls = rank, other, []

    def is_initialized(self):
        return True

    def get_world_size(self, group=None):
        return 2

    def get_rank(self, group=None):
        self.calls.append(("get_rank", group))
        return self.rank

    def all_reduce(self, tensor):
        self.calls.append(("all_reduce", tensor.dtype))
        tensor += torch.tensor(self.other, dtype=tensor.dtype)

    def broadcast(self, tensor, src):
        self.calls.append(("broadcast", src))
        if self.rank != src:
            tensor.fill_(self.other)


def test_the_ranks_average_take_rank_0s_value_and_know_their_seed_shift(monkeypatch):
    from torch.nn.parallel import DistributedDataParallel
    from fastp2p.train import distributed

    cpu = torch.device("cpu")
    single = distributed.ProcessInfo(0, 1, cpu)
    assert distributed.average_over_processes([1.5, 2.0], cpu) == [1.5, 2.0]
    assert distributed.from_main_process(7, single) == 7
    second = _TwoRanks(1, [0.5, -7.0])
    monkeypatch.setattr(distributed, "dist", second)
    assert distributed.average_over_processes([0.25, 3.0], cpu) == pytest.approx([0.375, -2.0])
    assert second.calls == [("all_reduce", torch.float64)]
    second.other = 40
    assert distributed.from_main_process(41, distributed.ProcessInfo(1, 2, cpu)) == 40
    wrapped = object.__new__(DistributedDataParallel)   # as DDP wraps: its group, its rank
    object.__setattr__(wrapped, "process_group", "the job's group")
    second.calls.clear()
    assert distributed.dropout_seed_shift(wrapped) == 1
    assert second.calls == [("get_rank", "the job's group")]
    assert distributed.dropout_seed_shift(torch.nn.Linear(1, 1)) == 0
