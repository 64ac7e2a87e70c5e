"""Can ``Pix2PixEngine.load_state_dict`` load this saved engine state? What it checks before it
loads anything, so that a state that does not fit is refused in one line and the engine is left
as it was.

torch.optim loads an Adam state of any shape and settings as it is: the first step then fails
mid-training, or silently uses it (moments cast to the parameter's type, a state under an
index no group lists left unused, amsgrad or maximize turned on). So the optimizers' states are
checked against the engine's optimizers here, the engine's counters against its own
tensors, and the saved dropout streams against the networks' modules. (Whether a whole
``*_train_state.pth`` has the structure fastp2p writes is
``fastp2p.train.train_state_check``'s to say.)
"""
import torch

# the engine's own tensors in its state (each kept as the attribute "_" + name)
ENGINE_COUNTERS = ("loss_sums", "device_step", "first_nonfinite_step")
# what every engine state holds (the others may be absent: older fastp2p versions' states)
REQUIRED_ENGINE_KEYS = frozenset({"optimizer_G", "optimizer_D", "lr", "steps", "rng"})


def check_engine_state(state: dict, optimizers: dict, counters: dict,
                       dropout_owners: dict) -> None:
    """A one-line ValueError if ``state`` (a ``Pix2PixEngine.state_dict()``) does not fit the
    engine whose ``optimizers`` ({"optimizer_G": ..., "optimizer_D": ...}), ``counters``
    (its ENGINE_COUNTERS tensors, by name) and ``dropout_owners`` (the modules owning its
    networks' dropout streams, by "netG.<name>" / "netD.<name>") are given; both optimizers
    are checked before either is loaded."""
    missing = REQUIRED_ENGINE_KEYS - set(state)
    if missing:
        raise ValueError(f"engine state lacks {sorted(missing)}: not a Pix2PixEngine state")
    for name, optimizer in optimizers.items():
        problem = _moments_problem(optimizer, state[name])
        if problem:
            raise ValueError(f"the training state's {name}: {problem}; resume with the "
                             "networks and options it was saved with")
    for name, ours in counters.items():
        if name in state and not (isinstance(state[name], torch.Tensor)
                                  and state[name].shape == ours.shape
                                  and state[name].dtype == ours.dtype):
            raise ValueError(f"the training state's {name} is not a {ours.dtype} tensor of "
                             f"shape {tuple(ours.shape)}: not a state this engine wrote")
    for name in state.get("dropout_rng", {}):
        if dropout_stream_owner(dropout_owners, name) is None:
            raise ValueError(f"the training state's dropout stream {name!r} belongs to no "
                             f"module of these networks (theirs: {sorted(dropout_owners)}); "
                             "resume with the options the state was saved with")


def dropout_stream_owner(owners: dict, name: str):
    """The entry of ``owners`` (by "netG.<name>" / "netD.<name>") for the saved dropout stream
    ``name``, also under the name states saved under torchrun by older fastp2p versions gave
    it; None when no module owns it."""
    return owners.get(name) or owners.get(_without_ddp_module(name))


def _without_ddp_module(name: str) -> str:
    """A dropout stream's name as states saved under torchrun by older fastp2p versions gave it
    ("netG.module.<name>", the DDP wrapper's child) without the wrapper ("netG.<name>")."""
    label, _, rest = name.partition(".")
    if rest == "module":
        return label
    return f"{label}.{rest[len('module.'):]}" if rest.startswith("module.") else name


# Adam's settings that Pix2PixEngine never changes: a saved state must hold its own values
# (torch.optim takes a group's settings from the state it loads).
_FIXED_ADAM_SETTINGS = ("amsgrad", "maximize", "weight_decay", "eps", "decoupled_weight_decay")
_ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def _moments_problem(optimizer, saved) -> str | None:
    """What in ``saved`` torch.optim would load as it is and the first step would trip over or
    silently use: a parameter's state without Adam's step and moments, or with moments of
    another shape than the parameter's or of an integer type; states under indices no group
    lists; settings this engine never uses (amsgrad, maximize, another eps or weight decay);
    betas that are not two numbers in [0, 1).
    (MasterWeightsAdam checks its own layout.)"""
    if not isinstance(optimizer, torch.optim.Optimizer):
        return None
    groups, states = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(states, dict) or len(groups) != len(
            optimizer.param_groups):
        return None   # torch's own load_state_dict says what is wrong
    problem = _parameter_indices_problem(groups, states)
    if problem:
        return problem
    for saved_group, group in zip(groups, optimizer.param_groups):
        for setting in _FIXED_ADAM_SETTINGS:
            if setting in saved_group and saved_group[setting] != group[setting]:
                return (f"Adam's {setting} is {saved_group[setting]!r}, this engine's "
                        f"{group[setting]!r}")
        betas = saved_group.get("betas")
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                for b in betas)):
            return f"Adam's betas are {betas!r}, not two numbers in [0, 1)"
        for index, param in zip(saved_group.get("params", []), group["params"]):
            entry = states.get(index, {})
            if not isinstance(entry, dict):
                return f"the state of parameter {index} is a {type(entry).__name__}"
            if not entry:
                continue  # a parameter not stepped yet
            missing = [key for key in ("step", *_ADAM_MOMENTS) if key not in entry]
            if missing:
                return f"the state of parameter {index} lacks {missing}"
            step = entry["step"]
            if not ((isinstance(step, torch.Tensor) and step.numel() == 1
                     and step.is_floating_point()) or
                    (isinstance(step, (int, float)) and not isinstance(step, bool))) or step < 0:
                return f"the step of parameter {index} is {step!r}, not a count"
            for key in _ADAM_MOMENTS:
                value = entry[key]
                if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else value
                    return (f"{key} of parameter {index} is {shape!r}, the parameter "
                            f"{tuple(param.shape)}")
                if not value.is_floating_point():
                    # torch.optim casts it to the parameter's type: the moments, truncated
                    return f"{key} of parameter {index} is of type {value.dtype}"
    return None


def _integers_first(key) -> tuple:
    """A sort key for dict keys of any types: integers in order, then the rest by repr."""
    return (0, key, "") if isinstance(key, int) else (1, 0, repr(key))


def _parameter_indices_problem(groups, states) -> str | None:
    """torch.optim pairs the saved groups' parameter indices with its parameters by position
    and keeps a state under an index no group lists as it is, unused: a parameter whose
    moments sit under another index would restart from fresh moments, with no message."""
    listed = [index for group in groups for index in group.get("params", [])]
    if not all(isinstance(index, int) and not isinstance(index, bool) for index in listed):
        return "the parameter groups list indices that are not integers"
    if len(set(listed)) != len(listed):
        return "the parameter groups list a parameter index more than once"
    unlisted = sorted(set(states) - set(listed), key=_integers_first)
    if unlisted:
        return f"it holds the state of parameter(s) {unlisted[:5]} that no group lists"
    return None
