"""A training state written by hand with its manifest recomputed (so the checksums pass) is
refused by `train --continue_train` in one line naming the file, with the resume advice, before
the run writes anything: it crashed with a TypeError, KeyError, IndexError or RuntimeError
from deep inside the resume (Progress(**...), the optimizers, numpy's and torch's RNGs)."""
import shutil

import pytest
import torch

from fastp2p.cli import main
from helpers.train_helpers import (folder_files, one_line, train_argv, write_aligned_dataset,
                                   write_train_state_with_manifest)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)
    checkpoints = tmp_path_factory.mktemp("ck")
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0")) == 0
    return data, checkpoints


def _load_state(folder):
    return torch.load(folder / "latest_train_state.pth", weights_only=True)


def _unexpected_progress_key(state):
    state["progress"]["surprise"] = 1


def _no_optimizer_state(state):
    del state["engine"]["optimizer_G"]["state"]


def _short_numpy_keys(state):
    state["numpy_rng"]["keys"] = torch.zeros(3, dtype=torch.int64)


def _short_torch_rng(state):
    state["engine"]["rng"]["cpu"] = torch.zeros(5, dtype=torch.uint8)


def _python_keys_of_text(state):
    state["python_rng"]["keys"] = ["a"] * 625


def _epoch_as_text(state):
    state["progress"]["epoch"] = "1"


def _no_schedule(state):
    del state["schedule"]


def _lr_as_text(state):
    state["engine"]["lr"] = "fast"


def _dropout_stream_of_three(state):
    state["engine"]["dropout_rng"] = {"netG.x": torch.zeros(3, dtype=torch.int64)}


def _adam_moment_of_another_shape(state):
    moments = state["engine"]["optimizer_D"]["state"][0]
    moments["exp_avg"] = torch.zeros(moments["exp_avg"].numel() + 1)


def _adam_moment_transposed(state):
    """As many elements as the parameter, in another shape."""
    moments = state["engine"]["optimizer_D"]["state"][0]
    moments["exp_avg"] = torch.zeros(tuple(reversed(moments["exp_avg"].shape)))


def _negative_epoch_images(state):
    state["progress"]["epoch_images"] = -2


def _epoch_zero(state):
    state["progress"]["epoch"] = 0


def _negative_steps(state):
    state["engine"]["steps"] = -7


def _adam_without_a_moment(state):
    del state["engine"]["optimizer_D"]["state"][0]["exp_avg"]


def _adam_step_as_text(state):
    state["engine"]["optimizer_D"]["state"][0]["step"] = "x"


def _adam_maximizing(state):
    state["engine"]["optimizer_D"]["param_groups"][0]["maximize"] = True


def _adam_amsgrad(state):
    state["engine"]["optimizer_D"]["param_groups"][0]["amsgrad"] = True


def _adam_one_beta(state):
    state["engine"]["optimizer_D"]["param_groups"][0]["betas"] = (0.5,)


def _adam_beta_of_one(state):
    state["engine"]["optimizer_D"]["param_groups"][0]["betas"] = (0.5, 1.0)


def _loss_sums_of_another_shape(state):
    state["engine"]["loss_sums"] = torch.zeros(3)


def _nan_moment(state):
    state["engine"]["optimizer_D"]["state"][0]["exp_avg_sq"][0] = float("nan")


def _negative_second_moment(state):
    state["engine"]["optimizer_G"]["state"][0]["exp_avg_sq"].fill_(-1.0)


def _infinite_adam_step(state):
    state["engine"]["optimizer_G"]["state"][1]["step"] = torch.tensor(float("inf"))


def _nan_loss_sum(state):
    state["engine"]["loss_sums"][2] = float("nan")


def _nan_plateau_scale(state):
    state["schedule"]["plateau_scale"] = float("nan")


def _plateau_scale_above_one(state):
    state["schedule"]["plateau_scale"] = 3.0


def _infinite_epoch_loss_sum(state):
    state["progress"]["epoch_loss_sum"] = float("inf")


def _negative_lr(state):
    state["engine"]["lr"] = -1.0


def _saved_after_a_nonfinite_loss(state):
    state["engine"]["first_nonfinite_step"] = torch.tensor(3)


def _integer_moment(state):
    moments = state["engine"]["optimizer_D"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].long()


def _moments_under_unlisted_indices(state):
    group = state["engine"]["optimizer_D"]["param_groups"][0]
    group["params"] = [index + 1000 for index in group["params"]]


def _a_parameter_listed_twice(state):
    group = state["engine"]["optimizer_D"]["param_groups"][0]
    group["params"] = [group["params"][0]] * len(group["params"])


def _nan_first_nonfinite_step(state):
    state["engine"]["first_nonfinite_step"] = torch.tensor(float("nan"))


def _first_nonfinite_step_of_a_float(state):
    state["engine"]["first_nonfinite_step"] = torch.tensor(0.0)


def _negative_device_step(state):
    state["engine"]["device_step"] = torch.tensor(-5)


def _loss_sums_on_the_meta_device(state):
    state["engine"]["loss_sums"] = torch.zeros(4, device="meta")


def _steps_past_int64(state):
    state["engine"]["steps"] = 2**63


def _lr_past_any_float(state):
    state["engine"]["lr"] = 10**400


def _nan_bad_epochs(state):
    state["schedule"]["bad_epochs"] = float("nan")


def _infinite_bad_epochs(state):
    state["schedule"]["bad_epochs"] = float("inf")


def _minus_infinite_best_metric(state):
    state["schedule"]["best_metric"] = float("-inf")


def _best_metric_past_any_float(state):
    state["schedule"]["best_metric"] = 10**400


def _epoch_count_after_the_epoch(state):
    # with --lr_policy step: 0.1 ** -(epochs between them) overflowed into a traceback
    state["schedule"]["epoch_count"] = 10**6


def _epoch_count_just_after_the_epoch(state):
    state["schedule"]["epoch_count"] = state["progress"]["epoch"] + 1


def _epoch_count_past_int64(state):
    state["schedule"]["epoch_count"] = 10**400


def _epoch_loss_sum_past_any_float(state):
    state["progress"]["epoch_loss_sum"] = 10**400


def _images_past_int64(state):
    state["progress"]["images"] = 10**400


def _adam_weight_decay_past_any_float(state):
    state["engine"]["optimizer_D"]["param_groups"][0]["weight_decay"] = 10**400


def _dropout_stream_of_no_module(state):
    state["engine"]["dropout_rng"]["netG.model.7"] = torch.tensor([0, 5])


def _a_parameter_group_short_of_a_parameter(state):
    optimizer = state["engine"]["optimizer_D"]
    optimizer["state"].pop(optimizer["param_groups"][0]["params"].pop(), None)


CRAFTS = [_unexpected_progress_key, _no_optimizer_state, _short_numpy_keys, _short_torch_rng,
          _python_keys_of_text, _epoch_as_text, _no_schedule, _lr_as_text,
          _dropout_stream_of_three, _negative_epoch_images, _epoch_zero, _negative_steps,
          # fastp2p saves nothing non-finite: resuming these stopped at the first step, blaming
          # the learning rate
          _nan_moment, _negative_second_moment, _infinite_adam_step, _nan_loss_sum,
          _nan_plateau_scale, _plateau_scale_above_one, _infinite_epoch_loss_sum, _negative_lr,
          _saved_after_a_nonfinite_loss,
          # counters and numbers of another type or past any float: int(), float() or a
          # message's repr raised (ValueError, OverflowError: no file named, or a traceback)
          _nan_first_nonfinite_step, _first_nonfinite_step_of_a_float, _negative_device_step,
          _loss_sums_on_the_meta_device, _steps_past_int64, _lr_past_any_float, _nan_bad_epochs,
          _infinite_bad_epochs, _minus_infinite_best_metric, _best_metric_past_any_float,
          _epoch_count_after_the_epoch, _epoch_count_just_after_the_epoch,
          _epoch_count_past_int64, _epoch_loss_sum_past_any_float,
          _images_past_int64, _adam_weight_decay_past_any_float]


# the record of the saved run's staged samples, which a resume keeps (its "yes" read as True,
# and a kept run's samples claimed images.0/, a name --overwrite does not remove)
def _staged_samples_of_text(state):
    state["staged_samples"] = {"set_aside_owed": "yes", "kept_number": 1}


def _staged_samples_kept_under_number_zero(state):
    state["staged_samples"] = {"set_aside_owed": True, "kept_number": 0}


# keys of two types, which no sort orders (the check raised TypeError: a traceback, no refusal)
def _staged_samples_with_a_number_key(state):
    state["staged_samples"] = {"set_aside_owed": True, "kept_number": 1, 1: 0}


CRAFTS += [_staged_samples_of_text, _staged_samples_kept_under_number_zero,
           _staged_samples_with_a_number_key]


# structure fine, but not what this engine wrote (torch.optim loads it, and the first step
# failed mid-training or, maximizing, trained G uphill): the engine's one line, after the file
OTHER_ENGINES = {
    _adam_moment_of_another_shape: "optimizer_D: exp_avg of parameter 0 is",
    _adam_without_a_moment: "optimizer_D: the state of parameter 0 lacks ['exp_avg']",
    _adam_step_as_text: "optimizer_D: the step of parameter 0 is 'x', not a count",
    _adam_maximizing: "optimizer_D: Adam's maximize is True, this engine's False",
    _adam_amsgrad: "optimizer_D: Adam's amsgrad is True, this engine's False",
    _adam_one_beta: "optimizer_D: Adam's betas are (0.5,), not two numbers in [0, 1)",
    _adam_beta_of_one: "optimizer_D: Adam's betas are (0.5, 1.0), not two numbers in [0, 1)",
    _adam_moment_transposed: "optimizer_D: exp_avg of parameter 0 is (4, 4, 6, 4), the "
                             "parameter (4, 6, 4, 4)",
    _loss_sums_of_another_shape: "loss_sums is not a torch.float32 tensor of shape (4,)",
    # torch.optim cast the moments to float (truncated), or kept them under an index no
    # group lists, unused (the parameters restarted from fresh moments): no message either way
    _integer_moment: "optimizer_D: exp_avg of parameter 0 is of type torch.int64",
    _moments_under_unlisted_indices: "optimizer_D: it holds the state of parameter(s) [0, 1, 2,",
    _a_parameter_listed_twice: "optimizer_D: the parameter groups list a parameter index more "
                               "than once",
    # refused by the engine after the optimizers, lr and RNG were loaded (and the run had
    # written its options file, loss log and page)
    _dropout_stream_of_no_module: "dropout stream 'netG.model.7' belongs to no module",
    # torch.optim's own refusal
    _a_parameter_group_short_of_a_parameter: "doesn't match the size of optimizer's group",
}


@pytest.mark.parametrize("craft", CRAFTS, ids=[craft.__name__[1:] for craft in CRAFTS])
def test_a_crafted_state_is_refused_in_one_line_before_anything_is_written(trained, tmp_path,
                                                                          capsys, craft):
    data, checkpoints = trained
    copy = tmp_path / "ck"
    shutil.copytree(checkpoints, copy)
    folder = copy / "tiny"
    state = _load_state(folder)
    craft(state)
    write_train_state_with_manifest(folder, state)
    before = folder_files(folder, mtimes=True)
    assert main(train_argv(data, copy, "--continue_train", "--n_epochs", "2",
                           "--n_epochs_decay", "0")) == 1
    line = one_line(capsys.readouterr().err)
    assert f"{folder / 'latest_train_state.pth'}: not a fastp2p training state (" in line
    assert "resume from another --epoch or start again without --continue_train" in line
    assert folder_files(folder, mtimes=True) == before   # loss log, options, pages: untouched


@pytest.mark.parametrize("craft", OTHER_ENGINES, ids=[c.__name__[1:] for c in OTHER_ENGINES])
def test_a_state_of_another_engine_is_refused_in_one_line_naming_the_file(trained, tmp_path,
                                                                         capsys, craft):
    """torch.optim loads Adam states of any shape and settings: the first step failed
    mid-training, or used them. The line names the file, as the other refusals of a training
    state do (it named none), and the refused run changed nothing in the folder: it had
    rewritten train_opt.txt with its own options (which a later --continue_train compares
    with) and the loss log."""
    data, checkpoints = trained
    copy = tmp_path / "ck"
    shutil.copytree(checkpoints, copy)
    folder = copy / "tiny"
    state = _load_state(folder)
    craft(state)
    write_train_state_with_manifest(folder, state)
    before = folder_files(folder, mtimes=True)
    assert main(train_argv(data, copy, "--continue_train", "--n_epochs", "2",
                           "--n_epochs_decay", "0")) != 0
    line = one_line(capsys.readouterr().err)
    assert f"{folder / 'latest_train_state.pth'}: " in line, line
    assert OTHER_ENGINES[craft] in line, line
    assert folder_files(folder, mtimes=True) == before


def _state_of_another_generation(folder):
    state = _load_state(folder)
    state["generation"] += 7
    write_train_state_with_manifest(folder, state)   # the manifest keeps its own generation
    return "latest_train_state.pth is of generation"


def _manifest_removed(folder):
    (folder / "latest_checkpoint.json").unlink()
    return "latest_train_state.pth has no manifest latest_checkpoint.json"


@pytest.mark.parametrize("damage", [_state_of_another_generation, _manifest_removed],
                         ids=["another-generation", "no-manifest"])
def test_a_state_its_manifest_does_not_vouch_for_is_refused_in_one_line(trained, tmp_path,
                                                                       capsys, damage):
    """A training state that is no part of the set its manifest records (another save's
    generation; no manifest at all, which crashed with a TypeError without the check)."""
    data, checkpoints = trained
    copy = tmp_path / "ck"
    shutil.copytree(checkpoints, copy)
    folder = copy / "tiny"
    problem = damage(folder)
    before = folder_files(folder, mtimes=True)
    assert main(train_argv(data, copy, "--continue_train", "--n_epochs", "2",
                           "--n_epochs_decay", "0")) == 1
    line = one_line(capsys.readouterr().err)
    assert problem in line and "resume from another --epoch or start again" in line, line
    assert folder_files(folder, mtimes=True) == before


def test_the_states_fastp2p_writes_pass_the_check(trained):
    from fastp2p.train.train_state_check import train_state_problem
    _, checkpoints = trained
    assert train_state_problem(_load_state(checkpoints / "tiny")) is None
