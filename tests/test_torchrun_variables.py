"""torchrun's LOCAL_RANK is read in one place (fastp2p.torchrun_variables) and parsed one way,
for the device a process takes and for whether it says its node's refusals
(``says_for_its_node``). An empty one, which torchrun never sets, counts as 0, as an empty
WORLD_SIZE counts as 1: ``launched_local_rank`` raised ValueError for it (``int("")``) where
``says_for_its_node``, reading it apart, took it as 0."""
import pytest

from fastp2p.command_errors import says_for_its_node
from fastp2p.torchrun_variables import (TorchrunVariableError, check_launch_variables,
                                         launched_local_rank)


@pytest.mark.parametrize("local_rank, expected", [(None, 0), ("", 0), ("0", 0), ("1", 1),
                                                  ("3", 3)])
def test_local_rank_is_parsed_one_way_for_the_device_and_for_the_node_s_refusals(
        monkeypatch, local_rank, expected):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert launched_local_rank() == expected
    assert says_for_its_node() == (expected == 0)


@pytest.mark.parametrize("name, value", [("LOCAL_RANK", "abc"), ("LOCAL_RANK", "-1"),
                                         ("WORLD_SIZE", "two"), ("WORLD_SIZE", "0"),
                                         ("RANK", "x1")])
def test_a_launch_variable_that_is_no_count_is_named_in_one_line(monkeypatch, name, value):
    """A LOCAL_RANK of -1 (some launchers' "not distributed") made ``says_for_its_node`` false
    in every process, so no process said a refusal; "abc" was a traceback (ValueError of
    ``int``) or an error line that named no variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(TorchrunVariableError) as refused:
        check_launch_variables()
    message = str(refused.value)
    assert f"{name}={value!r}" in message and f"unset {name}" in message


@pytest.mark.parametrize("argv", [["test"], ["pack", "missing_dataroot", "out"],
                                  ["train", "--lr", "nan"]])
def test_every_command_refuses_a_launch_variable_that_is_no_count(monkeypatch, capsys, argv):
    from fastp2p.cli import main

    monkeypatch.setenv("LOCAL_RANK", "-1")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fastp2p {argv[0]}: error: LOCAL_RANK='-1'"), err
