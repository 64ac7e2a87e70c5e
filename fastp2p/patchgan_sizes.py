"""The side of a PatchGAN's logit map, read without torch: the discriminators check their input
with it, and train refuses a crop too small for --n_layers_D before loading torch
(fastp2p.train.image_sizes)."""


def patch_logits_size(size: int, n_layers: int) -> int:
    """Side of the logit map for an input side: n_layers 4x4/s2/p1 convs, then two 4x4/s1/p1."""
    for _ in range(n_layers):
        size = (size - 2) // 2 + 1
    return size - 2


def most_patch_layers(side: int) -> int:
    """The most PatchGAN layers (--n_layers_D) that leave an input ``side`` pixels wide a
    logit map of at least 1x1 (each 4x4 stride-2 layer about halves it); -1 when even none
    does."""
    layers = -1
    while patch_logits_size(side, layers + 1) >= 1:
        layers += 1
    return layers
