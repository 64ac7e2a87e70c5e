"""Double backward checks shared by the gradient-penalty tests: the reference pix2pix's
``cal_gradient_penalty`` pattern (``autograd.grad(..., create_graph=True)``, then a loss of that
gradient, back-propagated), run on a fastp2p module and on its float64 reference, and every
gradient of both compared (DESIGN §5)."""
import torch

from helpers.tolerances import assert_close


def weighting(shape, seed=9):
    """A fixed random weighting in [-1, 1) of an output (float64): the grad_outputs of the
    first backward, so that no gradient is a plain sum."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64) * 2 - 1


def gradient_penalty(net, x):
    """(output, d(weighted output)/dx, the penalty's gradient w.r.t. x, each parameter's) of
    the penalty mean((||g_i|| - 1)^2) over the batch, g = d(weighted output)/dx built with
    create_graph=True (the reference implementation's WGAN-GP term)."""
    for p in net.parameters():
        p.grad = None
    x = x.clone().requires_grad_()
    out = net(x)
    g, = torch.autograd.grad(out, x, weighting(out.shape).to(out.dtype), create_graph=True)
    ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    return out, g, x.grad, {name: p.grad for name, p in net.named_parameters()}


def assert_gradients_match(ours, theirs, bound, what):
    """Every gradient of ``theirs`` (a dict name -> tensor or None) has one in ``ours`` within
    ``bound``; an analytically zero one (a conv bias before an instance norm, the last conv's
    bias in a penalty) within the bound times the largest gradient, or absent where theirs is."""
    scale = max(t.abs().max().item() for t in theirs.values() if t is not None)
    for name, expected in theirs.items():
        actual = ours[name]
        if expected is None or expected.norm().item() <= 1e-10 * scale:
            if actual is not None:
                assert actual.abs().max().item() <= bound * scale, f"{what} {name} not ~0"
            continue
        assert actual is not None, f"{what}: no gradient for {name} (the reference has one)"
        assert_close(actual, expected, bound, f"{what} {name}")


def randomize_norms(net):
    """Random affine parameters and running statistics for every norm layer that has them, so
    that eval-mode batch norm is not the identity and a wrong gamma shows."""
    generator = torch.Generator().manual_seed(5)

    def uniform(t, low, high):
        t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * (high - low) + low)

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase):
                if module.weight is not None:
                    uniform(module.weight, 0.5, 1.5)
                    uniform(module.bias, -0.5, 0.5)
                if module.running_mean is not None:
                    uniform(module.running_mean, -0.3, 0.3)
                    uniform(module.running_var, 0.5, 1.5)
    return net
