"""Is a loaded ``*_train_state.pth`` one that ``Trainer.train_state()`` wrote?

A manifest's checksums only say the files are the ones the manifest lists: a state written by
hand (or by another program) with its manifest recomputed passes them. Resuming from it must
stop at one line naming the file, before anything of the run is changed, not at a traceback
from deep inside ``Progress(**...)``, ``random.setstate`` or ``torch.set_rng_state``. So the
state's structure is checked here, and each RNG state is tried on a fresh generator of its kind
(what the generators accept is theirs to say: a state they take is one they can resume).
"""
import math
import random
from dataclasses import MISSING, fields

import numpy as np
import torch

from fastp2p.train.engine_state import ENGINE_COUNTERS, REQUIRED_ENGINE_KEYS
from fastp2p.train.finite import first_nonfinite
from fastp2p.train.position import Progress
from fastp2p.train.training_page import STAGED_RECORD

_INT, _NUMBER, _FLAG = (int,), (int, float), (bool,)
# No count fastp2p keeps comes near an int64's largest value; a crafted Python int past it can
# be past any float too, and the lr schedule and the epoch's loss mean make floats of counts
_COUNT_MAX = torch.iinfo(torch.int64).max
# the engine's counters that count steps (0-d int64 tensors); loss_sums' shape is the engine's
_STEP_COUNTERS = ("device_step", "first_nonfinite_step")
# Progress's fields and the types train_state() writes them with; None where the field may be
# None (the states of older fastp2p versions)
_PROGRESS = {"epoch": (_INT, False), "epoch_batches": (_INT, False), "images": (_INT, False),
             "epoch_images": (_INT, True), "batch_size": (_INT, True),
             "world_size": (_INT, True), "epoch_loss_sum": (_NUMBER, False),
             "epoch_loss_reads": (_INT, False), "epoch_complete": (_FLAG, False),
             "dataset_pairs": (_INT, True)}
# the least value of each integer field (0 for those not named)
_LEAST = {"epoch": 1, "batch_size": 1, "world_size": 1, "dataset_pairs": 1}
_REQUIRED_PROGRESS = {field.name for field in fields(Progress) if field.default is MISSING}


def _is(value, types) -> bool:
    # bool is an int to Python; in these states a bool is only ever a flag
    return isinstance(value, types) and (types is _FLAG or not isinstance(value, bool))


def _is_count(value, least=0) -> bool:
    return _is(value, _INT) and least <= value <= _COUNT_MAX


def _as_float(value) -> float | None:
    """``value`` as the float it is used as; None if it is not a number, or an int past any
    float."""
    if not _is(value, _NUMBER):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _shown(value) -> str:
    """``value`` in a message, short: a crafted int or text may have hundreds of characters."""
    if _is(value, _INT) and not -_COUNT_MAX <= value <= _COUNT_MAX:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _is_seed_offset(pair) -> bool:
    """A dropout stream's (seed, offset): an int64 tensor of two, as the engine saves it."""
    if isinstance(pair, torch.Tensor):
        return pair.dtype == torch.int64 and pair.shape == (2,)
    return isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is(p, _INT) for p in pair)


def _progress_problem(progress) -> str | None:
    if not isinstance(progress, dict):
        return "'progress' is not a dict"
    unknown = sorted(set(progress) - set(_PROGRESS), key=str)
    if unknown:
        return f"'progress' has unknown field(s) {unknown}"
    missing = sorted(_REQUIRED_PROGRESS - set(progress))
    if missing:
        return f"'progress' lacks {missing}"
    for name, value in progress.items():
        types, may_be_none = _PROGRESS[name]
        if not (_is(value, types) or (may_be_none and value is None)):
            return f"progress[{name!r}] is {_shown(value)}"
        if value is None:
            continue
        if types is _INT and not _is_count(value, _LEAST.get(name, 0)):
            return (f"progress[{name!r}] is {_shown(value)}, not in "
                    f"[{_LEAST.get(name, 0)}, 2**63 - 1]")
        if types is _NUMBER and _as_float(value) is None:
            return f"progress[{name!r}] is {_shown(value)}, past any float"
    return None


def _optimizer_problem(name: str, optimizer) -> str | None:
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        return f"engine[{name!r}] has no 'state' dict"
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not groups or not all(
            isinstance(group, dict) and isinstance(group.get("params"), list)
            for group in groups):
        return f"engine[{name!r}] has no 'param_groups' list of groups with 'params'"
    return None


def _rng_problem(state: dict) -> str | None:
    """Each saved RNG state, set on a fresh generator of its kind: the error it raises."""
    python_rng, numpy_rng, engine_rng = (state.get("python_rng"), state.get("numpy_rng"),
                                         state["engine"].get("rng"))
    if not isinstance(python_rng, dict) or not isinstance(python_rng.get("keys"), list):
        return "'python_rng' is not a dict with a 'keys' list"
    if not isinstance(numpy_rng, dict) or not isinstance(numpy_rng.get("keys"), torch.Tensor):
        return "'numpy_rng' is not a dict with a 'keys' tensor"
    if not isinstance(engine_rng, dict) or not isinstance(engine_rng.get("cpu"), torch.Tensor):
        return "engine['rng'] is not a dict with a 'cpu' tensor"
    if "cuda" in engine_rng and not (isinstance(engine_rng["cuda"], torch.Tensor)
                                     and engine_rng["cuda"].dtype == torch.uint8):
        return "engine['rng']['cuda'] is not a uint8 tensor"
    tries = {
        "python_rng": lambda: random.Random().setstate(
            (python_rng.get("version"), tuple(python_rng["keys"]), python_rng.get("gaussian"))),
        "numpy_rng": lambda: np.random.RandomState().set_state(
            (numpy_rng.get("kind"), numpy_rng["keys"].numpy().astype(np.uint32),
             numpy_rng.get("position"), numpy_rng.get("has_gauss"),
             numpy_rng.get("cached_gaussian"))),
        "engine['rng']['cpu']": lambda: torch.Generator().set_state(engine_rng["cpu"]),
    }
    for name, set_state in tries.items():
        try:
            set_state()
        except (TypeError, ValueError, OverflowError, IndexError, RuntimeError) as err:
            return f"{name} is not a generator state: {str(err).splitlines()[0]}"
    return None


def _values(value, path: str):
    """(path, value) of every tensor and number in nested dicts, lists and tuples of ``value``
    (a stack, not recursion: a crafted state may nest deeper than Python's recursion limit)."""
    stack = [(path, value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, torch.Tensor) or _is(value, _NUMBER):
            yield path, value
        elif isinstance(value, dict):
            stack.extend((f"{path}[{key!r}]", item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def _nonfinite_problem(state) -> str | None:
    """NaN or Inf where a state fastp2p wrote has none: fastp2p saves nothing non-finite (a run
    stops first), so such a state was written by something else, and resuming it would only
    stop at its first step blaming the learning rate. (The schedule's numbers have their
    ranges checked in ``_schedule_problem``.)"""
    engine = state["engine"]
    named = [*_values(engine["optimizer_G"], "engine['optimizer_G']"),
             *_values(engine["optimizer_D"], "engine['optimizer_D']"),
             ("engine['lr']", engine["lr"]), ("engine['loss_sums']", engine.get("loss_sums")),
             ("progress['epoch_loss_sum']", state["progress"].get("epoch_loss_sum"))]
    numbers = [(path, value) for path, value in named if _is(value, _NUMBER)]
    tensors = [(path, value) for path, value in named if isinstance(value, torch.Tensor)]
    huge = next((path for path, value in numbers if _as_float(value) is None), None)
    if huge:  # torch.optim and the messages about Adam's settings would choke on it
        return f"{huge} is an integer past any float, which fastp2p never saves"
    bad = (next((path for path, value in numbers if not math.isfinite(value)), None)
           or first_nonfinite(tensors))
    if bad:
        return f"{bad} holds NaN or Inf, which fastp2p never saves"
    # Adam's second moments are running means of squares: a negative one has no square root,
    # and resuming it stopped at the first step with a NaN loss, blaming the learning rate.
    negative = next((path for path, value in tensors if path.endswith("['exp_avg_sq']")
                     and value.numel() and value.min() < 0), None)
    return f"{negative} holds negative second moments, which Adam never has" if negative else None


def _schedule_problem(schedule) -> str | None:
    """The schedule's numbers in the ranges it keeps them in: the plateau scale in (0, 1], a
    count of bad epochs >= 0, a best metric that is finite (+Inf until an epoch has been
    measured: non-finite metrics are not observed), an epoch count >= 1 (whether it is at most
    the saved epoch is ``_epoch_count_problem``'s to say)."""
    if not isinstance(schedule, dict) or not all(
            _as_float(schedule.get(key)) is not None for key in ("plateau_scale",
                                                                 "best_metric")):
        return "'schedule' is not a dict with plateau_scale and best_metric numbers"
    if not 0 < schedule["plateau_scale"] <= 1:
        return f"schedule['plateau_scale'] is {_shown(schedule['plateau_scale'])}, not in (0, 1]"
    if not _is_count(schedule.get("bad_epochs")):
        return (f"schedule['bad_epochs'] is {_shown(schedule.get('bad_epochs'))}, not a count "
                "of epochs")
    if not (math.isfinite(schedule["best_metric"]) or schedule["best_metric"] == math.inf):
        return (f"schedule['best_metric'] is {schedule['best_metric']!r}, which fastp2p never "
                "saves")
    epoch_count = schedule.get("epoch_count", 1)  # absent from older fastp2p versions' states
    if not _is_count(epoch_count, 1):
        return (f"schedule['epoch_count'] is {_shown(epoch_count)}, not an integer in "
                "[1, 2**63 - 1]")
    return None


def _epoch_count_problem(state) -> str | None:
    """The schedule counts the run's epochs from its epoch count, the first epoch it trained:
    a later one is no state fastp2p wrote (and its lr for the saved epoch, 0.1 to the power of
    minus the epochs between them with --lr_policy step, may be past any float)."""
    epoch_count, epoch = state["schedule"].get("epoch_count", 1), state["progress"]["epoch"]
    if epoch_count > epoch:
        return (f"schedule['epoch_count'] is {epoch_count}, after the saved epoch "
                f"progress['epoch'] {epoch}")
    return None


def train_state_problem(state) -> str | None:
    """What keeps ``state`` from being resumed, in a few words; None if it is a training state
    (whether it fits this run's networks and options is the engine's to say)."""
    if not isinstance(state, dict):
        return "not a dict"
    missing = sorted({"engine", "schedule", "progress", "python_rng", "numpy_rng"} - set(state))
    if missing:
        return f"it lacks {missing}"
    engine = state["engine"]
    if not isinstance(engine, dict):
        return "'engine' is not a dict"
    missing = sorted(REQUIRED_ENGINE_KEYS - set(engine))
    if missing:
        return f"'engine' lacks {missing}"
    if not all(map(_is_count, (engine["steps"], engine.get("steps_since_read", 0)))):
        return "engine['steps'] or engine['steps_since_read'] is not an integer in [0, 2**63 - 1]"
    if not (_as_float(engine["lr"]) is not None and engine["lr"] >= 0):
        return f"engine['lr'] is {_shown(engine['lr'])}, not a number >= 0"
    for name in ENGINE_COUNTERS:  # engine.state_dict() saves them .cpu()
        if name in engine and not (isinstance(engine[name], torch.Tensor)
                                   and engine[name].device.type == "cpu"):
            return f"engine[{name!r}] is not a tensor on the CPU"
    for name in _STEP_COUNTERS:
        counter = engine.get(name)
        if counter is not None and not (counter.dtype == torch.int64 and counter.dim() == 0
                                        and int(counter) >= 0):
            return f"engine[{name!r}] is not a count of steps (a 0-d int64 tensor >= 0)"
    flagged = engine.get("first_nonfinite_step")
    if flagged is not None and int(flagged) != 0:
        return (f"engine['first_nonfinite_step'] is {int(flagged)}: saved after a non-finite "
                "loss, which fastp2p never does")
    dropout = engine.get("dropout_rng", {})
    if not isinstance(dropout, dict) or not all(map(_is_seed_offset, dropout.values())):
        return "engine['dropout_rng'] is not a dict of (seed, offset) integer pairs"
    return (_schedule_problem(state["schedule"])
            or _progress_problem(state["progress"])
            or _epoch_count_problem(state)
            or _optimizer_problem("optimizer_G", engine["optimizer_G"])
            or _optimizer_problem("optimizer_D", engine["optimizer_D"])
            or _rng_problem(state)
            or _nonfinite_problem(state)
            or _staged_samples_problem(state))


def _staged_samples_problem(state) -> str | None:
    """The record of the saved run's staged samples (TrainingPage.staged_record), if any: a
    resume keeps the staged files it names (none, in the states of older fastp2p versions)."""
    record = state.get(STAGED_RECORD, None)
    if record is None or (
            isinstance(record, dict) and set(record) == {"kept_number", "set_aside_owed"}
            and _is(record["set_aside_owed"], _FLAG)
            and (record["kept_number"] is None or _is_count(record["kept_number"], least=1))):
        return None
    return (f"{STAGED_RECORD!r} is {_shown(record)}, not {{'set_aside_owed': True or False, "
            "'kept_number': a count or None}")
