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

from fastp2p.train.engine import ENGINE_COUNTERS
from fastp2p.train.finite import first_nonfinite
from fastp2p.train.trainer import Progress

_INT, _NUMBER, _FLAG = (int,), (int, float), (bool,)
# Progress's fields and the types train_state() writes them with; None where the field may be
# None (the states of older fastp2p versions)
_PROGRESS = {"epoch": (_INT, False), "epoch_batches": (_INT, False), "images": (_INT, False),
             "epoch_images": (_INT, True), "batch_size": (_INT, True),
             "world_size": (_INT, True), "epoch_loss_sum": (_NUMBER, False),
             "epoch_loss_reads": (_INT, False), "epoch_complete": (_FLAG, False)}
# the least value of each integer field (0 for those not named)
_LEAST = {"epoch": 1, "batch_size": 1, "world_size": 1}
_REQUIRED_PROGRESS = {field.name for field in fields(Progress) if field.default is MISSING}


def _is(value, types) -> bool:
    # bool is an int to Python; in these states a bool is only ever a flag
    return isinstance(value, types) and (types is _FLAG or not isinstance(value, bool))


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
            return f"progress[{name!r}] is {value!r}"
        if value is not None and types is _INT and value < _LEAST.get(name, 0):
            return f"progress[{name!r}] is {value!r}, below {_LEAST.get(name, 0)}"
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
    """(path, value) of every tensor and float in nested dicts, lists and tuples of ``value``
    (a stack, not recursion: a crafted state may nest deeper than Python's recursion limit)."""
    stack = [(path, value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (torch.Tensor, float)):
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
    numbers = [(path, value) for path, value in named if isinstance(value, (int, float))]
    tensors = [(path, value) for path, value in named if isinstance(value, torch.Tensor)]
    bad = (next((path for path, value in numbers if not math.isfinite(value)), None)
           or first_nonfinite(tensors))
    return f"{bad} holds NaN or Inf, which fastp2p never saves" if bad else None


def _schedule_problem(schedule) -> str | None:
    """The plateau schedule's numbers in the ranges it keeps them in: its scale in (0, 1], a
    count of bad epochs >= 0, a best metric that is a number (+Inf until an epoch has been
    measured), an epoch count >= 1."""
    if not isinstance(schedule, dict) or not all(
            _is(schedule.get(key), _NUMBER) for key in ("plateau_scale", "best_metric",
                                                        "bad_epochs")):
        return "'schedule' is not a dict of plateau_scale, best_metric and bad_epochs numbers"
    if not 0 < schedule["plateau_scale"] <= 1:
        return f"schedule['plateau_scale'] is {schedule['plateau_scale']!r}, not in (0, 1]"
    if schedule["bad_epochs"] < 0:
        return f"schedule['bad_epochs'] is {schedule['bad_epochs']!r}, below 0"
    if math.isnan(schedule["best_metric"]):
        return "schedule['best_metric'] is NaN, which fastp2p never saves"
    epoch_count = schedule.get("epoch_count", 1)  # absent from older fastp2p versions' states
    if not _is(epoch_count, _INT) or epoch_count < 1:
        return "schedule['epoch_count'] is not an integer >= 1"
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
    missing = sorted({"optimizer_G", "optimizer_D", "lr", "steps", "rng"} - set(engine))
    if missing:
        return f"'engine' lacks {missing}"
    if not all(_is(count, _INT) and count >= 0
               for count in (engine["steps"], engine.get("steps_since_read", 0))):
        return "engine['steps'] or engine['steps_since_read'] is not an integer >= 0"
    if not (_is(engine["lr"], _NUMBER) and engine["lr"] >= 0):
        return f"engine['lr'] is {engine['lr']!r}, not a number >= 0"
    for name in ENGINE_COUNTERS:
        if name in engine and not isinstance(engine[name], torch.Tensor):
            return f"engine[{name!r}] is not a tensor"
    flagged = engine.get("first_nonfinite_step")
    if flagged is not None and flagged.numel() == 1 and int(flagged) != 0:
        return (f"engine['first_nonfinite_step'] is {int(flagged)}: saved after a non-finite "
                "loss, which fastp2p never does")
    dropout = engine.get("dropout_rng", {})
    if not isinstance(dropout, dict) or not all(map(_is_seed_offset, dropout.values())):
        return "engine['dropout_rng'] is not a dict of (seed, offset) integer pairs"
    return (_schedule_problem(state["schedule"])
            or _progress_problem(state["progress"])
            or _optimizer_problem("optimizer_G", engine["optimizer_G"])
            or _optimizer_problem("optimizer_D", engine["optimizer_D"])
            or _rng_problem(state)
            or _nonfinite_problem(state))
