"""The lr of each epoch as the reference's ``train.py`` takes it from a torch scheduler: the
scheduler steps at the start of each epoch, before that epoch trains (``model.
update_learning_rate()`` heads its epoch loop), or, with ``step_first=False``, at its end, as
its ``train.py`` did before about 2020 and as a plateau scheduler must to observe the epoch."""
import warnings

import torch


def reference_lrs(make_scheduler, epochs, metrics=None, step_first=True):
    """The lrs of ``epochs`` epochs of ``make_scheduler(optimizer)`` from an lr of 2e-4, or
    ``metrics[epoch]`` passed to each step (ReduceLROnPlateau)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for index in range(epochs):
        if step_first:
            with warnings.catch_warnings():   # the reference's order raises PyTorch's warning
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")
                scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if not step_first:
            scheduler.step(*([] if metrics is None else [metrics[index]]))
    return lrs
