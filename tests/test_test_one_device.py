"""`fastp2p test` translates in one process, on one device, and says so: `--gpu_ids 0,1`
advised `torchrun --nproc_per_node=2`, under which every process translated every image into
the same files and page; its `--device` and `--gpu_ids` help were train's (torchrun's processes
taking cuda:LOCAL_RANK)."""
import argparse

import pytest

from fastp2p.cli import build_parser, main
from helpers.train_helpers import one_line, tiny_test_argv, write_aligned_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=1)


def test_under_torchrun_test_is_refused_in_one_line_before_writing(
        data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    results = tmp_path / "results"
    assert main(tiny_test_argv(data, tmp_path / "checkpoints", results)) == 2
    assert one_line(capsys.readouterr().err) == (
        "fastp2p test: error: fastp2p test translates in one process, on one device, but torchrun "
        "started 2 (WORLD_SIZE=2), each of which would translate every image into the same "
        "folder; run it without torchrun (--device cuda:N or --gpu_ids N picks the GPU)")
    assert not results.exists()


def test_several_gpu_ids_ask_for_one_not_for_torchrun(data, tmp_path, capsys):
    assert main(tiny_test_argv(data, tmp_path / "checkpoints", tmp_path / "results",
                               "--gpu_ids", "0,1")) == 2
    assert one_line(capsys.readouterr().err) == (
        "fastp2p test: error: --gpu_ids 0,1: fastp2p test translates on one device; pass one id "
        "(--gpu_ids N)")


def _option_help(command: str) -> dict:
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    sub = commands.choices[command]
    formatter = sub._get_formatter()
    return {action.option_strings[0]: formatter._expand_help(action)
            for action in sub._actions if action.option_strings and action.help}


def test_the_device_options_help_says_test_runs_on_one_device():
    test, train = _option_help("test"), _option_help("train")
    assert test["--device"].endswith(
        "the one device it runs on, in one process (not under torchrun) (default auto)")
    assert test["--gpu_ids"].endswith(
        "several ids are refused: test translates on one device (default: --device)")
    for option in ("--device", "--gpu_ids"):
        assert "LOCAL_RANK" not in test[option] and "--nproc_per_node" not in test[option]
    # train's are as they were
    assert "under torchrun each process takes cuda:LOCAL_RANK" in train["--device"]
    assert "`torchrun --nproc_per_node=K -m fastp2p ...` instead" in train["--gpu_ids"]
