"""torch.library.opcheck of the norm-act custom ops (schema, fake tensors, declared mutation of
the running statistics and batch count, AOT dispatch) on every CPU backend and on the GPU."""
import pytest
import torch

import fastp2p.ops  # noqa: F401  (registers torch.ops.fastp2p.*)
from helpers.forced_backend import force_backend


@pytest.mark.parametrize("norm,training", [("instance", True), ("batch", True),
                                           ("batch", False), ("none", True)])
def test_opcheck_norm_act_ops(backend, norm, training):
    _opcheck_norm_act(norm, training, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("norm,training", [("instance", True), ("batch", True),
                                           ("batch", False), ("none", True)])
def test_gpu_opcheck_norm_act_ops(monkeypatch, norm, training):
    force_backend(monkeypatch, "triton")
    _opcheck_norm_act(norm, training, "cuda")


def _opcheck_norm_act(norm, training, device):
    """Schema, fake tensors, declared mutation (running stats, batch count), AOT dispatch. The ops
    carry no autograd registration of their own (the autograd.Function around them is the
    formula), so the inputs here do not require grad."""
    x, skip = torch.randn(2, 3, 4, 4, device=device), torch.randn(2, 2, 4, 4, device=device)
    w, b = torch.rand(3, device=device), torch.rand(3, device=device)
    running = ((torch.zeros(3, device=device), torch.ones(3, device=device),
                torch.zeros((), device=device, dtype=torch.int64)) if norm == "batch"
               else (None, None, None))  # running_mean, running_var, num_batches_tracked
    cfg = dict(norm=norm, training=training, momentum=0.1, eps=1e-5, activation="leaky_relu",
               slope=0.2, dropout_p=0.5)
    args = (x, w, b, *running, skip, None, 3, 4)
    torch.library.opcheck(torch.ops.fastp2p.norm_act_fwd.default, args, cfg)
    out, mean, rstd = torch.ops.fastp2p.norm_act_fwd(*args, **cfg)
    bwd_args = (torch.randn_like(out), x, w, b, mean, rstd, skip, None, 3, 4)
    torch.library.opcheck(torch.ops.fastp2p.norm_act_bwd.default, bwd_args,
                          dict(norm=norm, training=training, activation="leaky_relu", slope=0.2,
                               dropout_p=0.5))
