"""Model FLOPs of a pix2pix training step, counted from the layer shapes.

Only convolutions and transposed convolutions are counted (2 FLOPs per multiply-add); norms,
activations, losses and Adam are memory-bound and add well under 1%. The networks are built
on the ``meta`` device and run once with hooks, so no memory or compute is spent.

Per training step (pix2pix's order, DESIGN.md §4), with F, I, W a layer's forward, input-
gradient and weight-gradient FLOPs (each equal to the forward's):
- G: one forward; backward computes W for every layer and I for every layer but the first
  (the input image needs no gradient);
- D: three forwards (fake for the D step, real, fake for the G step); the D step's two
  backwards compute W and I except the first layer's I; the G step's backward computes I for
  every layer (including the first: the gradient reaches the fake image) and no W, because D's
  parameters are frozen during the G step.
For the 256x256 defaults this gives about 87 GFLOP per image (DESIGN.md §6).
"""
import torch
import torch.nn as nn

from fastp2p.bench.networks import NetworkConfig, build_discriminator, build_generator

DESIGN_ESTIMATE_GFLOP = 87.0  # DESIGN.md §6: "about 87 GFLOP per image"


def layer_forward_flops(module: nn.Module, image: torch.Tensor) -> list[int]:
    """Forward FLOPs of each conv / transposed conv of ``module`` for ``image``, in call order."""
    counts = []

    def count(layer, inputs, output):
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        if isinstance(layer, nn.ConvTranspose2d):
            # every input element scatters into kernel x out_channels / groups outputs
            counts.append(2 * inputs[0].numel() * kernel * layer.out_channels // layer.groups)
        else:
            counts.append(2 * output.numel() * kernel * layer.in_channels // layer.groups)

    hooks = [layer.register_forward_hook(count) for layer in module.modules()
             if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            module(image)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def training_step_flops(config: NetworkConfig) -> dict:
    """FLOPs per image of G's and D's forward and of one full training step (see module doc)."""
    size = config.image_size
    with torch.device("meta"):
        generator = build_generator(config, fast=False)
        discriminator = build_discriminator(config, fast=False)
        g_layers = layer_forward_flops(generator, torch.empty(1, config.input_nc, size, size))
        d_layers = layer_forward_flops(
            discriminator, torch.empty(1, config.input_nc + config.output_nc, size, size))
    g_forward, d_forward = sum(g_layers), sum(d_layers)
    generator_step = 3 * g_forward - g_layers[0]
    discriminator_step = 3 * d_forward + 2 * (2 * d_forward - d_layers[0]) + d_forward
    step = generator_step + discriminator_step
    return {
        "generator_forward_gflop": g_forward / 1e9,
        "discriminator_forward_gflop": d_forward / 1e9,
        "train_step_gflop_per_image": step / 1e9,
        "design_estimate_gflop_per_image": DESIGN_ESTIMATE_GFLOP,
        "method": "conv and transposed-conv FLOPs from layer shapes (2 per multiply-add); "
                  "G: forward + weight grads + input grads but the first layer's; D: 3 "
                  "forwards, 2 D-step backwards (weight + input grads but the first layer's), "
                  "1 G-step backward (input grads only, D frozen)",
    }
