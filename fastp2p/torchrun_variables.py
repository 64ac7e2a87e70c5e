"""What torchrun tells the processes it starts, read from its environment variables without
torch: ``fastp2p test`` and ``fastp2p bench`` refuse a torchrun job before torch loads
(seconds), so that its processes do not each go on to say another error first, and
``command_errors`` asks which process of a node says a refusal. At the bottom of the layers
beside ``command_errors``, which imports it: standard library only."""
import os


def launched_world_size() -> int:
    """How many processes torchrun started (its WORLD_SIZE; 1 without torchrun), known before
    the process group is joined."""
    return _count("WORLD_SIZE", 1)


def launched_local_rank() -> int:
    """This process's GPU index on its node as torchrun numbers it (its LOCAL_RANK; 0 without
    torchrun). An empty LOCAL_RANK, which torchrun never sets, counts as 0, as an empty
    WORLD_SIZE counts as 1: the process then says its node's refusals rather than none."""
    return _count("LOCAL_RANK", 0)


class TorchrunVariableError(ValueError):
    """A torchrun variable in the environment that is not a whole number in its range."""


# each variable's smallest value: a LOCAL_RANK of -1 (some scripts' "not distributed") would
# leave every process of a node silent about its refusals (``says_for_its_node``)
_SMALLEST = {"WORLD_SIZE": 1, "LOCAL_RANK": 0, "RANK": 0}


def check_launch_variables() -> None:
    """Raise ``TorchrunVariableError`` for a torchrun variable the environment sets to no whole
    number in its range: what every command checks first, so that no later reading of it fails
    with a traceback (or, for a negative LOCAL_RANK, says nothing)."""
    for name, default in _SMALLEST.items():
        _count(name, default)


def _count(name: str, default: int) -> int:
    """The variable ``name`` as a whole number, ``default`` where it is unset or empty."""
    text = os.environ.get(name, "")
    if text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < _SMALLEST[name]:
        raise TorchrunVariableError(
            f"{name}={text!r} in the environment is not a whole number >= {_SMALLEST[name]}: "
            f"torchrun sets it for the processes it starts; outside torchrun, unset {name}")
    return value
