"""``torch.nn.utils.vector_to_parameters`` (the flat-vector pattern of evolution strategies, line
searches, SWA-style code) sets each parameter's ``.data`` to a view of the vector, keeping the
parameter's version counter: an in-place change of the vector, loaded again or not, changes the
weights without anything the inference caches key on changing (fastp2p.nn.folding; no cheap
check sees it). The networks' docstrings and the README say so and name
``forget_cached_weights``, which these tests show brings every network back to the reference's
outputs (relative error 0.68 for the U-Net without it)."""
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import fastp2p
from fastp2p import reference
from fastp2p.nn.folding import forget_cached_weights
from helpers.network_checks import randomize_batchnorms
from helpers.tolerances import FP32_NETWORK, assert_close

README = Path(__file__).resolve().parents[1] / "README.md"
NETWORKS = {
    "UNet": (fastp2p.UNet, lambda: reference.UnetGenerator(3, 3, 6, 4), 3, 64),
    "PatchDiscriminator": (fastp2p.PatchDiscriminator,
                           lambda: reference.NLayerDiscriminator(6, 4, 3), 6, 64),
    "PixelDiscriminator": (fastp2p.PixelDiscriminator,
                           lambda: reference.PixelDiscriminator(6, 4), 6, 16),
}


@pytest.mark.parametrize("network", NETWORKS)
def test_forget_cached_weights_after_changing_the_loaded_vector(network):
    cls, build_reference, channels, size = NETWORKS[network]
    torch.manual_seed(0)
    theirs = randomize_batchnorms(build_reference(), 3).eval()
    ours = cls.from_checkpoint(theirs.state_dict()).eval()
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    theirs_vector = parameters_to_vector(theirs.parameters()).detach().clone()
    ours_vector = theirs_vector.clone()
    vector_to_parameters(theirs_vector, theirs.parameters())
    vector_to_parameters(ours_vector, ours.parameters())
    with torch.no_grad():
        ours(x)  # caches the folds and weight copies of the vector's values
        for vector in (theirs_vector, ours_vector):
            vector.mul_(1.5)
    vector_to_parameters(ours_vector, ours.parameters())
    forget_cached_weights(ours)
    with torch.no_grad():
        assert_close(ours(x), theirs.double()(x.double()), FP32_NETWORK, network)


@pytest.mark.parametrize("cls", [fastp2p.UNet, fastp2p.PatchDiscriminator,
                                 fastp2p.PixelDiscriminator])
def test_the_docstrings_name_the_blind_spots_and_the_remedy(cls):
    doc = " ".join(cls.__doc__.split())
    for named in ("``.data``", "vector_to_parameters", "fastp2p.nn.folding.forget_cached_weights"):
        assert named in doc, (cls.__name__, named)


def test_the_readme_names_vector_to_parameters_beside_the_data_note():
    readme = " ".join(README.read_text(encoding="utf-8").split())
    note = readme[readme.index("A write through `.data` bumps no counter"):]
    assert note.index("vector_to_parameters") < note.index("forget_cached_weights(G)` after it")
