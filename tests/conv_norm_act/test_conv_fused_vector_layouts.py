"""The fused convolution with per-channel vectors that are views, not dense arrays: a user's
scale / shift (a (N, C) column slice, a (C,) ``[::2]``), bias, a norm's gamma / beta and batch
norm's running statistics. The kernels index these vectors densely, so the launchers read
strided ones through contiguous copies and copy updated running statistics back, as norm_act's
launchers do (they once read the wrong elements: relative errors 0.14 to 0.64). Each view sits
in a NaN-filled buffer, so a wrong element read shows, and a write outside the view stays
visible; the results must equal those of the same values passed dense, bit for bit."""
import pytest
import torch

from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import GradFold, InputTransform, conv_fused_fwd  # noqa: E402
from fastp2p.kernels.conv_fused_wgrad import (conv_fused_bias_grad,  # noqa: E402
                                              conv_fused_wgrad)
from fastp2p.kernels.conv_stats_finish import conv_stats_finish  # noqa: E402
from fastp2p.ops.conv_norm_act import conv_norm_act  # noqa: E402

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")


def _strided(values):
    """``values`` (1-D or 2-D) as a view with last-dim stride 2 into a NaN-filled buffer."""
    base = torch.full(values.shape[:-1] + (2 * values.shape[-1],), float("nan"))
    base[..., ::2] = values
    return base[..., ::2]


def _outside(view):
    """The buffer's elements that are not in ``view`` (all NaN unless something wrote there)."""
    return view._base[..., 1::2]


def _assert_strided_as_dense(run):
    """``run(layout)`` -> (results, running views): with ``_strided`` vectors, the results of
    dense copies bit for bit, and nothing written beside the running statistics' views."""
    expected, _ = run(lambda t: t.clone())
    got, running = run(_strided)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert torch.equal(a, b), f"result {i}: strided differs from dense"
    assert all(torch.isnan(_outside(r)).all() for r in running), "wrote outside a running view"


@pytest.mark.interpreter
@needs_triton
def test_strided_scale_shift_bias_and_running_statistics_in_the_op():
    """conv_norm_act, the decoder's transposed conv: skip with a per-image scale / shift,
    dropped-out up with a per-channel one, a bias, batch statistics with running buffers; its
    output, statistics, running update and every gradient as with dense vectors."""
    gen = torch.Generator().manual_seed(3)

    def rand(*shape, center=0.0):
        return torch.randn(shape, generator=gen) + center

    skip, up = rand(2, 3, 3, 4), rand(2, 2, 3, 4)
    vectors = dict(skip_scale=rand(2, 3, center=1.0), skip_shift=rand(2, 3),
                   up_scale=rand(2, center=1.0), up_shift=rand(2), bias=rand(4))
    weight, grad = rand(5, 4, 4, 4) * 0.3, rand(2, 4, 6, 8)
    running = (rand(4), rand(4, center=2.0).abs())

    def run(layout):
        v = {name: layout(t).requires_grad_() for name, t in vectors.items()}
        sources = [skip.clone().requires_grad_(), up.clone().requires_grad_()]
        w = weight.clone().requires_grad_()
        transforms = [InputTransform(v["skip_scale"], v["skip_shift"], "leaky_relu"),
                      InputTransform(v["up_scale"], v["up_shift"], "relu", 0.5, 11, 3)]
        stats = tuple(layout(r) for r in running)
        y, mean, rstd = conv_norm_act(sources, transforms, w, v["bias"], stride=2, padding=1,
                                      transposed=True, norm="batch", running_mean=stats[0],
                                      running_var=stats[1], momentum=0.3)
        (y * grad).sum().backward()
        return ([y, mean, rstd, *stats]
                + [t.grad for t in (*sources, w, *v.values())]), stats

    _assert_strided_as_dense(run)


@pytest.mark.interpreter
@needs_triton
def test_strided_gamma_beta_and_running_statistics_in_the_stats_finish():
    """conv_stats_finish, per channel, with gamma, beta and running statistics as views."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(5, 3, 4, 4, generator=gen)
    _, parts = conv_fused_fwd([x], [InputTransform()], weight, stride=2, padding=1)
    vectors = [torch.rand(5, generator=gen) + 0.5, torch.randn(5, generator=gen),
               torch.randn(5, generator=gen), torch.rand(5, generator=gen) + 0.5]

    def run(layout):
        gamma, beta, *running = (layout(v) for v in vectors)
        out = conv_stats_finish(parts, per_sample=False, eps=1e-3, gamma=gamma, beta=beta,
                                running_mean=running[0], running_var=running[1], momentum=0.2)
        return [*out, *running], running

    _assert_strided_as_dense(run)


@pytest.mark.interpreter
@needs_triton
@pytest.mark.parametrize("per_sample", [True, False], ids=["instance", "batch"])
def test_strided_fold_coefficients_in_the_weight_and_bias_gradients(per_sample):
    """conv_fused_wgrad and conv_fused_bias_grad called directly with a GradFold whose alpha /
    beta are views: the same gradients as with dense ones."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    grad_y, y = (torch.randn(2, 4, 3, 3, generator=gen).contiguous(
        memory_format=torch.channels_last) for _ in range(2))
    shape = (2, 4) if per_sample else (4,)
    alpha, beta = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)

    def run(layout):
        fold = GradFold(y, layout(alpha), layout(beta))
        return (conv_fused_wgrad(grad_y, x, kernel_size=(4, 4), stride=2, padding=1, fold=fold),
                conv_fused_bias_grad(grad_y, fold))

    for i, (a, b) in enumerate(zip(run(_strided), run(lambda t: t.clone()))):
        assert torch.equal(a, b), f"result {i}: strided differs from dense"

