"""The norm-act op's test cases, and their check against the float64 oracle: every case
writes ``cat([relu(skip), norm_act(x)])`` and checks the output, the running statistics and
every gradient (input, skip, weight, bias) against ``norm_act_math`` in float64 with the same
dropout mask. Used for each path of the op (tests/norm_act/test_norm_act.py: the Triton kernels;
test_norm_act_torch_route.py: PyTorch's own ops in CPU training)."""
import torch

from fastp2p.ops import norm_act_concat
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.tolerances import assert_close


def laid_out(x, layout):
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":  # non-contiguous: a strided view with gaps
        wide = torch.empty(x.shape[0], x.shape[2], x.shape[3], x.shape[1] + 3, dtype=x.dtype,
                           device=x.device)
        wide[..., 1:1 + x.shape[1]] = x.permute(0, 2, 3, 1)
        return wide[..., 1:1 + x.shape[1]].permute(0, 3, 1, 2)
    return x.contiguous()


# A case's momentum, eps and LeakyReLU slope: torch's defaults (0.1, 1e-5, 0.2), or values that a
# path ignoring its argument (using the default, or no eps) cannot match. eps 0.5 moves rstd by
# about 6% (x's variance is about 4) and by 13 to 29% in eval (running variance in
# [0.5, 1.5]); 1e-5 moves it by at most 1e-5 relative, which the 1e-5 bound does not see.
DEFAULTS = {}
OTHERS = dict(momentum=0.3, eps=0.5, slope=0.05)
# A batch norm without running statistics (BatchNorm2d(track_running_stats=False)): the batch's
# own statistics in eval too.
UNTRACKED = dict(running=False)

# norm, training, activation, affine, dropout_p, shape (N, C, H, W), layout, settings
CASES = [
    ("instance", True, "leaky_relu", True, 0.0, (2, 5, 3, 4), "nhwc", OTHERS),
    ("instance", True, "relu", False, 0.5, (1, 70, 2, 2), "nchw", DEFAULTS),
    ("instance", True, "none", False, 0.0, (2, 3, 24, 30), "permuted", DEFAULTS),
    ("batch", True, "relu", True, 0.0, (2, 67, 3, 5), "nhwc", OTHERS),
    ("batch", True, "leaky_relu", True, 0.5, (3, 6, 1, 1), "permuted", DEFAULTS),
    ("batch", False, "leaky_relu", True, 0.0, (2, 5, 3, 4), "nhwc", OTHERS),
    ("batch", False, "relu", False, 0.5, (1, 9, 2, 2), "nchw", DEFAULTS),
    ("batch", False, "leaky_relu", True, 0.0, (2, 5, 3, 4), "nhwc", UNTRACKED),
    ("none", True, "leaky_relu", True, 0.0, (2, 5, 4, 4), "nchw", OTHERS),
    ("none", True, "none", False, 0.5, (1, 3, 2, 2), "nhwc", DEFAULTS),
]


def case_id(case):
    norm, training, act, affine, p, (n, c, h, w), layout, settings = case
    mode = "" if norm != "batch" else ("-train" if training else "-eval")
    others = "".join(f"-{name}{value}" for name, value in settings.items())
    return (f"{norm}{mode}-{act}-{'affine' if affine else 'plain'}-p{p}-N{n}-C{c}-H{h}-W{w}-"
            f"{layout}{others}")


def make_case(case, dtype, seed=0):
    norm, training, act, affine, p, shape, layout, settings = case
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.5
    skip64 = torch.randn((shape[0], 4) + shape[2:], generator=gen, dtype=torch.float64)
    weight = bias = running = None
    if affine:
        weight = torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5
        bias = torch.rand(shape[1], generator=gen, dtype=torch.float64) - 0.5
    settings = dict(settings)
    if norm == "batch" and settings.pop("running", True):
        running = (torch.randn(shape[1], generator=gen, dtype=torch.float64) * 0.3,
                   torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5)
    grad = torch.randn((shape[0], 4 + shape[1]) + shape[2:], generator=gen, dtype=torch.float64)
    kwargs = dict(norm=norm, training=training, momentum=0.1, eps=1e-5, activation=act,
                  slope=0.2, dropout_p=p, seed=1234 + seed, offset=2 ** 33 - 7)
    kwargs.update(settings)
    return x64, skip64, weight, bias, running, grad, kwargs, layout


def reference_run(x64, skip64, weight, bias, running, grad, kwargs):
    """float64 autograd through the oracle: output, grads, updated running stats."""
    x = x64.clone().requires_grad_()
    skip = skip64.clone().requires_grad_()
    w = None if weight is None else weight.clone().requires_grad_()
    b = None if bias is None else bias.clone().requires_grad_()
    rm, rv = (None, None) if running is None else (running[0].clone(), running[1].clone())
    y = torch.cat([torch.relu(skip), norm_act_math(x, w, b, rm, rv, **kwargs)], 1)
    y.backward(grad)
    grads = [x.grad, skip.grad] + ([] if w is None else [w.grad, b.grad])
    return y.detach(), grads, (rm, rv)


def op_run(x64, skip64, weight, bias, running, grad, kwargs, layout, dtype):
    x = laid_out(x64.to(dtype), layout).requires_grad_()
    skip = laid_out(skip64.to(dtype), layout).requires_grad_()
    w = None if weight is None else weight.float().requires_grad_()
    b = None if bias is None else bias.float().requires_grad_()
    rm, rv = (None, None) if running is None else (running[0].float(), running[1].float())
    y = norm_act_concat(skip, x, w, b, rm, rv, **kwargs)
    y.backward(grad.to(dtype))
    grads = [x.grad, skip.grad] + ([] if w is None else [w.grad, b.grad])
    return y.detach(), grads, (rm, rv)


def check_against_reference(case, dtype, bound):
    data = make_case(case, dtype)
    expected, expected_grads, expected_running = reference_run(*data[:-1])
    got, got_grads, got_running = op_run(*data, dtype)
    assert_close(got, expected, bound, "output")
    for name, g, e in zip(("x", "skip", "weight", "bias"), got_grads, expected_grads):
        assert_close(g, e, bound, f"grad {name}")
    if case[0] == "batch" and expected_running[0] is not None:
        assert_close(got_running[0], expected_running[0], bound, "running_mean")
        assert_close(got_running[1], expected_running[1], bound, "running_var")
