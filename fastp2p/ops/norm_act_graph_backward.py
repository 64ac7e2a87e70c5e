"""The norm-act backward as differentiable torch ops: what ``norm_act`` / ``norm_act_concat``
run when autograd asks for a graph of the backward.

Autograd runs a Function's backward with grad mode on exactly when the caller passed
``create_graph=True`` — a gradient penalty (``autograd.grad(D(x), x, create_graph=True)``, then
a loss of that gradient, as the reference pix2pix's ``cal_gradient_penalty``), or any higher
derivative. The kernels' backward is not differentiable, and the statistics the forward saves
are detached constants, so there the gradients come from here instead: the reference backend's
closed-form backward (the formulas the kernels implement), fed with the saved x, weight, bias
and grad_out (each keeps its autograd history) and with the batch statistics recomputed from x,
so that their dependence on x is part of the second derivative. Eval batch norm's running
statistics stay constants and are not updated again. The cost, paid on this path only: the
statistics and the backward recomputed in plain torch ops (the first-order backward, grad mode
off, is unchanged).
"""
from fastp2p.ops.backends import reference as reference_backend
from fastp2p.ops.norm_act_reference import statistics_of


def norm_act_backward_with_graph(grad_out, saved, weight, bias, mean, rstd, skip, *, cfg,
                                 batch_stats: bool, reads_output: bool, seed, offset):
    """(grad_x, grad_weight, grad_bias, grad_skip) as differentiable functions of grad_out, x,
    weight and bias.

    ``saved``: the forward's x, or its output where the layer saves that instead
    (``reads_output``: no norm, no affine, no skip). The gradient is then grad_out times a
    factor of the output's sign and the dropout mask: linear in grad_out, piecewise constant in
    the output (whose derivative is 0 almost everywhere), so the output enters as a constant.
    ``mean`` / ``rstd``: the saved statistics, used only where they are constants (eval batch
    norm). The skip half, ``relu(skip)``, likewise: grad_out's slice where skip > 0.
    """
    skip_channels = 0 if skip is None else skip.shape[1]
    x = saved.detach() if reads_output else saved
    if batch_stats and not reads_output:
        mean, rstd = statistics_of(x, norm=cfg.norm, eps=cfg.eps)
    grad_x, grad_weight, grad_bias = reference_backend.norm_act_bwd(
        grad_out.narrow(1, skip_channels, x.shape[1]), x, weight, bias, mean, rstd,
        norm=cfg.norm, activation=cfg.activation, slope=cfg.slope, dropout_p=cfg.dropout_p,
        seed=seed, offset=offset, training=batch_stats)
    grad_skip = None
    if skip is not None:
        empty = x.new_empty(0)
        grad_skip = reference_backend.norm_act_bwd(
            grad_out.narrow(1, 0, skip_channels), skip.detach(), None, None, empty, empty,
            norm="none", activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)[0]
    return grad_x, grad_weight, grad_bias, grad_skip
