"""fastp2p.ops.conv_norm_act refuses a bias that is not one value per output channel (C_out:
weight dim 0 of a direct convolution, dim 1 of a transposed one), with a ValueError naming
the shapes, before any kernel runs or running statistic moves: the kernels read bias[c] for
each output channel c, so a shorter bias was read past its end and a longer one cut silently.
No kernel runs here, so no Triton is needed."""
import pytest
import torch

from fastp2p.kernels.conv_fused_types import InputTransform
from fastp2p.ops.conv_norm_act import conv_norm_act

X = torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize("transposed, weight, bias", [
    (False, (5, 3, 4, 4), (6,)),     # one too many
    (False, (5, 3, 4, 4), (4,)),     # one too few
    (False, (5, 3, 4, 4), (5, 1)),   # the right count, not a vector
    (True, (3, 5, 4, 4), (3,)),      # a transposed weight's dim 0 is its input channels
], ids=["long", "short", "matrix", "transposed-input-channels"])
def test_a_bias_of_another_length_is_refused(transposed, weight, bias):
    running = [torch.zeros(weight[1] if transposed else weight[0]) for _ in range(2)]
    before = [t.clone() for t in running]
    out_channels = weight[1] if transposed else weight[0]
    with pytest.raises(ValueError, match=rf"conv_norm_act: bias must hold one value per "
                                         rf"output channel, shape \({out_channels},\) .* got "
                                         rf"\({', '.join(map(str, bias))},?\)"):
        conv_norm_act([X], [InputTransform()], torch.randn(weight), torch.randn(bias),
                      stride=2, padding=1, transposed=transposed, norm="batch",
                      running_mean=running[0], running_var=running[1])
    assert all(torch.equal(t, b) for t, b in zip(running, before))
