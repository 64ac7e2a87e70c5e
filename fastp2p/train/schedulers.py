"""Learning-rate policies of the reference implementation, as plain functions of the epoch.

The engine holds the lr (a device tensor on CUDA), so the policies only compute a number and
the training loop calls ``engine.set_lr`` at the start of each epoch. ``steps`` counts the
scheduler steps the reference has taken when that epoch trains. Its ``train.py`` before about
2020 stepped them at the end of each epoch, the order PyTorch documents (``--lr_step_at
epoch_end``, the default): ``epoch - --epoch_count`` steps. Its ``train.py`` since then steps
them at the start (``epoch_start``; its issue #1100 reports the "lr_scheduler.step() before
optimizer.step()" warning that order raises): one step more, so the linear decay starts in epoch
``--n_epochs`` and the last epoch trains at lr 0.
"""
import math

LR_POLICIES = ("linear", "step", "plateau", "cosine")
# when the reference's train.py steps its schedulers: the steps taken before the first epoch
LR_STEPS_AT = {"epoch_end": 0, "epoch_start": 1}


class LRSchedule:
    """``lr_for_epoch(epoch)``, and ``observe(metric)`` after an epoch for the plateau policy.
    ``steps`` below: ``epoch - epoch_count`` with ``step_at`` "epoch_end", one more with
    "epoch_start".

    - linear: the reference's ``lambda_rule``, factor ``1 - max(0, steps + epoch_count -
      n_epochs) / (n_epochs_decay + 1)``: stepped at the epochs' end, constant for ``n_epochs``,
      then a linear decay over ``n_epochs_decay`` that ends one step above 0; at their start,
      one epoch earlier, so the last epoch trains at 0;
    - step: multiply by 0.1 every ``lr_decay_iters`` steps;
    - cosine: the reference's ``CosineAnnealingLR(T_max=n_epochs, eta_min=0)``, stepped once
      per epoch over all ``n_epochs + n_epochs_decay`` epochs: the lr falls to 0 over the first
      ``n_epochs`` and, being a cosine, rises again after them (it is not held at 0);
    - plateau: multiply by 0.2 when the metric (the epoch's mean generator loss) has not improved
      by 1% for 5 epochs (the reference's ReduceLROnPlateau settings), observed after each
      epoch whatever ``step_at`` (there is no loss before the first). The reference's pix2pix
      model never sets the metric it passes, a constant 0, so its cuts come whatever the
      losses: after epoch 7 and every 6 epochs after it (from epoch 7 on when it steps at the
      start).
    """

    PLATEAU_FACTOR, PLATEAU_THRESHOLD, PLATEAU_PATIENCE, PLATEAU_EPS = 0.2, 0.01, 5, 1e-8

    def __init__(self, policy, base_lr, *, n_epochs, n_epochs_decay, epoch_count=1,
                 lr_decay_iters=50, step_at="epoch_end"):
        if policy not in LR_POLICIES:
            raise ValueError(f"lr_policy must be one of {LR_POLICIES}, got {policy!r}")
        if step_at not in LR_STEPS_AT:
            raise ValueError(f"step_at must be one of {tuple(LR_STEPS_AT)}, got {step_at!r}")
        for name, value, low in (("n_epochs", n_epochs, 0), ("n_epochs_decay", n_epochs_decay, 0),
                                 ("epoch_count", epoch_count, 1),
                                 ("lr_decay_iters", lr_decay_iters, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if policy == "cosine" and n_epochs < 1:
            raise ValueError("lr_policy 'cosine' anneals over n_epochs, which must be >= 1")
        self.policy, self.base_lr = policy, float(base_lr)
        self.n_epochs, self.n_epochs_decay = n_epochs, n_epochs_decay
        self.epoch_count, self.lr_decay_iters = epoch_count, lr_decay_iters
        self.plateau_scale, self.best_metric, self.bad_epochs = 1.0, math.inf, 0
        self.steps_before_training = LR_STEPS_AT[step_at]

    def lr_for_epoch(self, epoch: int) -> float:
        """The lr for (1-based) ``epoch``."""
        steps = epoch - self.epoch_count + self.steps_before_training
        # int / int: exact for counts past any float (--n_epochs_decay 10**400), which a float
        # of the divisor is not (OverflowError)
        if self.policy == "linear":
            factor = 1.0 - (max(0, steps + self.epoch_count - self.n_epochs)
                            / (self.n_epochs_decay + 1))
        elif self.policy == "step":
            factor = 0.1 ** (steps // self.lr_decay_iters)
        elif self.policy == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * (steps / self.n_epochs)))
        else:
            factor = self.plateau_scale
        return self.base_lr * factor

    def observe(self, metric: float) -> None:
        """Feed the epoch's metric (lower is better); only the plateau policy uses it."""
        if self.policy != "plateau" or not math.isfinite(metric):
            return
        if metric < self.best_metric * (1.0 - self.PLATEAU_THRESHOLD):
            self.best_metric, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.PLATEAU_PATIENCE:
            # as ReduceLROnPlateau (eps 1e-8): no cut smaller than that
            if self.base_lr * self.plateau_scale * (1 - self.PLATEAU_FACTOR) > self.PLATEAU_EPS:
                self.plateau_scale *= self.PLATEAU_FACTOR
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best_metric": self.best_metric,
                "bad_epochs": self.bad_epochs, "epoch_count": self.epoch_count}

    def state_problem(self, state: dict, *, epoch: int) -> str | None:
        """Why ``state`` cannot be loaded to resume at ``epoch`` (None: it can). A state of an
        older fastp2p version, without ``epoch_count``, keeps this schedule's (the command
        line's --epoch_count), which must then be at most ``epoch``, the saved epoch the run
        resumes at: the schedule is not defined before its first epoch (with --lr_policy step,
        its lr there was --lr times a power of 10, past any float for a large --epoch_count),
        and whatever the policy, the run's next state would be refused as one fastp2p never
        writes."""
        if "epoch_count" not in state and self.epoch_count > epoch:
            return (f"saved by an older fastp2p, which did not record the epoch its run started "
                    f"at, so its lr schedule would count from --epoch_count {self.epoch_count}, "
                    f"after epoch {epoch} where it resumes; give the --epoch_count that run "
                    f"started at (1 unless it was given another), at most {epoch}")
        return None

    def load_state_dict(self, state: dict, *, epoch: int) -> None:
        """The saved schedule, counted from the saved run's first epoch (a resumed run's
        --epoch_count does not shift its lrs); states of older fastp2p versions, without
        ``epoch_count``, keep this schedule's. Raises ValueError, changing nothing, for a state
        ``state_problem`` refuses."""
        problem = self.state_problem(state, epoch=epoch)
        if problem:
            raise ValueError(problem)
        self.epoch_count = int(state.get("epoch_count", self.epoch_count))
        self.plateau_scale = float(state["plateau_scale"])
        self.best_metric = float(state["best_metric"])
        self.bad_epochs = int(state["bad_epochs"])
