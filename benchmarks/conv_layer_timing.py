"""Per-layer benchmark of the fused Triton convolution (issue 16) against cuDNN + today's
norm-act kernels, on every conv of U-Net-256 and the 70x70 PatchGAN (256x256 input), batch 1
and 64, bf16 channels-last, forward and forward+backward: ms (medians of CUDA-graph replays,
p20/p80) and TFLOP/s, with the ratio of the two in the same run.

Per layer, both providers do the same work: the previous layer's norm + activation applied to
its pre-norm output, this layer's convolution, and this layer's output statistics where a norm
follows.
- ``cudnn+norm_act``: ``fastp2p.ops.norm_act`` (decoder: ``norm_act_concat``, which writes the
  concatenation) then ``F.conv2d`` / ``F.conv_transpose2d`` (cuDNN); the statistics of this
  layer's output are the next norm-act's job, so a layer followed by a norm also runs that
  norm's statistics (``F.batch_norm`` / ``F.instance_norm`` in training mode).
- ``fused``: ``fastp2p.ops.conv_norm_act`` — prologue scale/shift + activation, bias and the
  statistics in the epilogue; the decoder reads skip and up as two K-ranges.

CUDA only: ``python benchmarks/conv_layer_timing.py [--quick] [--norm batch|instance]``; on a machine
without a GPU it says so and exits with status 1.
"""
import argparse
import sys

import torch
import torch.nn.functional as F

# (name, transposed, stride, sources (channels of each K-range), C_out, input side,
# prologue activation, whether a norm precedes (prologue scale/shift), whether one follows)
UNET = (
    [("unet.down0", False, 2, (3,), 64, 256, "none", False, False)]
    + [(f"unet.down{i}", False, 2, (ci,), co, s, "leaky_relu", i > 1, i < 7)
       for i, (ci, co, s) in enumerate([(64, 128, 128), (128, 256, 64), (256, 512, 32),
                                        (512, 512, 16), (512, 512, 8), (512, 512, 4),
                                        (512, 512, 2)], start=1)]
    + [("unet.up7", True, 2, (512,), 512, 1, "relu", False, True)]
    + [(f"unet.up{i}", True, 2, (c, c), co, s, "relu", True, i > 0)
       for i, (c, co, s) in zip(range(6, -1, -1), [(512, 512, 2), (512, 512, 4), (512, 512, 8),
                                                   (512, 256, 16), (256, 128, 32),
                                                   (128, 64, 64), (64, 3, 128)])]
)
PATCHGAN = [
    ("patchgan.conv0", False, 2, (6,), 64, 256, "none", False, False),
    ("patchgan.conv1", False, 2, (64,), 128, 128, "leaky_relu", False, True),
    ("patchgan.conv2", False, 2, (128,), 256, 64, "leaky_relu", True, True),
    ("patchgan.conv3", False, 1, (256,), 512, 32, "leaky_relu", True, True),
    ("patchgan.conv4", False, 1, (512,), 1, 31, "leaky_relu", True, False),
]
QUICK = [UNET[2], UNET[9], UNET[12], PATCHGAN[3]]


def _flops(layer, batch):
    _, transposed, stride, sources, c_out, side, *_ = layer
    out_side = side * stride if transposed else (side + 2 - 4) // stride + 1
    pixels = side * side if transposed else out_side * out_side
    return 2 * batch * pixels * sum(sources) * c_out * 16


def _layer_inputs(layer, batch, norm, device):
    """Pre-norm sources, per-source scale/shift (or None), weight, bias, dropout seed."""
    _, transposed, _, sources, c_out, side, _, normed, _ = layer
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    xs = [randn(batch, c, side, side).to(torch.bfloat16).contiguous(
        memory_format=torch.channels_last) for c in sources]
    coeffs = [((randn(batch, c) if norm == "instance" else randn(c)).abs() + 0.5,
               randn(batch, c) if norm == "instance" else randn(c)) if normed else (None, None)
              for c in sources]
    c_in = sum(sources)
    weight = (randn(c_in, c_out, 4, 4) if transposed else randn(c_out, c_in, 4, 4)) * 0.02
    return xs, coeffs, weight.to(torch.bfloat16), randn(c_out).to(torch.bfloat16)


def _fused(layer, norm, coeffs, weight, bias):
    from fastp2p.kernels.conv_fused import InputTransform
    from fastp2p.ops.conv_norm_act import conv_norm_act
    _, transposed, stride, _, _, _, activation, _, followed = layer
    transforms = [InputTransform(scale, shift, activation) for scale, shift in coeffs]

    def call(*leaves):
        y, mean, rstd = conv_norm_act(leaves, transforms, weight, bias, stride=stride,
                                      padding=1, transposed=transposed,
                                      norm=norm if followed else "none")
        return [t for t in (y, mean, rstd) if t is not None]
    return call


def _cudnn(layer, norm, coeffs, weight, bias):
    """The statistics of this layer's output are left to the next layer's norm_act, which
    computes them from its input (as here for the previous layer's): the sums over a network
    match the fused provider's, whose epilogue computes them."""
    from fastp2p.ops import norm_act, norm_act_concat
    _, transposed, stride, _, _, _, activation, normed, _ = layer
    conv = F.conv_transpose2d if transposed else F.conv2d

    def prologue(x):
        if normed:
            return norm_act(x, norm=norm, activation=activation, slope=0.2)
        if activation == "none":
            return x
        return F.leaky_relu(x, 0.2) if activation == "leaky_relu" else torch.relu(x)

    def call(*leaves):
        if len(leaves) == 2:  # writes cat([relu(skip), relu(norm(up))]) into one buffer
            a = norm_act_concat(prologue(leaves[0]), leaves[1], norm=norm, activation="relu")
        else:
            a = prologue(leaves[0])
        return [conv(a, weight, bias, stride=stride, padding=1)]
    return call


def _forward_backward(make, xs, weight, bias):
    """Forward and backward of make(weight, bias) to the sources, weight and bias; the
    statistics get a gradient too (in a network the next norm's affine gives them one)."""
    leaves = [x.detach().requires_grad_() for x in xs]
    params = [weight.detach().requires_grad_(), bias.detach().requires_grad_()]
    fn = make(*params)
    outputs = fn(*leaves)
    grads = [torch.randn_like(outputs[0])] + [torch.ones_like(t) for t in outputs[1:]]

    def call():
        for leaf in leaves + params:
            leaf.grad = None
        torch.autograd.backward(fn(*leaves), grads)
    return call


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four layers, batch 1 and 64")
    parser.add_argument("--norm", choices=("batch", "instance"), default="batch",
                        help="the networks' norm layer (pix2pix default: batch)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("conv_layer_timing: needs a CUDA GPU (the fused Triton convolution runs on CPUs only "
              "through the Triton interpreter, which is not a benchmark); nothing measured",
              file=sys.stderr)
        return 1
    try:
        from kernel_timing import time_ms
    except ImportError:  # imported as benchmarks.conv_layer_timing
        from benchmarks.kernel_timing import time_ms
    device = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, bf16 "
          f"channels-last, norm={args.norm}; ms = median of CUDA-graph replays [p20, p80]")
    print(f"{'layer':16s} {'batch':>5s} {'mode':17s} {'cudnn+norm_act ms [p20,p80]':>30s} "
          f"{'fused ms':>9s} {'speedup':>8s} {'TFLOP/s cudnn/fused':>20s}")
    for layer in (QUICK if args.quick else UNET + PATCHGAN):
        for batch in (1, 64):
            xs, coeffs, weight, bias = _layer_inputs(layer, batch, args.norm, device)
            flops = _flops(layer, batch)
            for mode, multiple in (("forward", 1), ("forward+backward", 3)):
                times = {}
                for provider, make in (("cudnn", _cudnn), ("fused", _fused)):
                    try:
                        if mode == "forward":
                            fn = make(layer, args.norm, coeffs, weight, bias)
                            with torch.no_grad():
                                times[provider] = time_ms(lambda: fn(*xs), device)
                        else:
                            call = _forward_backward(
                                lambda w, b: make(layer, args.norm, coeffs, w, b), xs, weight,
                                bias)
                            times[provider] = time_ms(call, device)
                    except Exception as error:  # a failure is a row, not a crash
                        print(f"{layer[0]:16s} {batch:5d} {mode:17s} {provider} failed: "
                              f"{type(error).__name__}: {error}")
                if len(times) == 2:
                    c, f = times["cudnn"][0], times["fused"][0]
                    print(f"{layer[0]:16s} {batch:5d} {mode:17s} {c:9.4f} "
                          f"[{times['cudnn'][1]:.3f},{times['cudnn'][2]:.3f}] {f:9.4f} "
                          f"{c / f:10.2f}x {multiple * flops / c / 1e9:6.1f}/"
                          f"{multiple * flops / f / 1e9:<6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
