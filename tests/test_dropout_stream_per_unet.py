"""Each U-Net a process builds takes its own default dropout seed (fastp2p.nn.fused
.default_dropout_seed), so separately built U-Nets (CycleGAN's two generators, an ensemble,
MC-dropout over models) draw independent masks, as reference U-Nets drawing from torch's
generator do; a copy keeps its original's stream until ``set_dropout_rng``; the training and
test commands still put their generator's stream at (--seed, 0)."""
import copy
import threading
from types import SimpleNamespace

import torch

import fastp2p
from fastp2p.train.networks import generator_from_options
from helpers.tolerances import relative_error


def _unet():
    """num_downs 6: the smallest U-Net with a Dropout (in its one ngf*8 middle level)."""
    return fastp2p.UNet(3, 3, 6, ngf=8, use_dropout=True)


def _image():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_two_unets_built_in_a_row_draw_different_masks(one_thread):
    torch.manual_seed(0)
    first, second = _unet(), _unet()
    second.load_state_dict(first.state_dict())
    assert first.dropout_rng[0] != second.dropout_rng[0]
    with torch.no_grad():
        assert relative_error(first(_image()), second(_image())) > 0.01


def test_unets_built_by_threads_at_once_take_different_seeds():
    seeds, start = [], threading.Barrier(4)

    def build():
        start.wait()
        seeds.append(int(_unet().dropout_rng[0]))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seeds)) == 4


def test_a_copy_shares_its_originals_stream_until_set(one_thread):
    """As copying a torch.Generator does: the documented advice for independent masks is
    ``set_dropout_rng`` on the copy."""
    original = _unet()
    twin = copy.deepcopy(original)
    with torch.no_grad():
        assert torch.equal(original(_image()), twin(_image()))
        twin.set_dropout_rng(int(original.dropout_rng[0]) + 1)
        assert relative_error(original(_image()), twin(_image())) > 0.01


def test_a_meta_built_unet_keeps_the_seed_its_construction_took():
    """Materialised, two meta-built U-Nets stream apart, and a copy made on meta streams as its
    original (the seed is taken at construction, not again at ``to_empty``)."""
    with torch.device("meta"):
        first, second = _unet(), _unet()
        twin = copy.deepcopy(first)
    for net in (first, second, twin):
        net.to_empty(device="cpu")
    assert first.dropout_rng.tolist() == twin.dropout_rng.tolist()
    assert first.dropout_rng[0] != second.dropout_rng[0]


def test_the_commands_generator_streams_from_their_seed_after_other_unets():
    """``fastp2p train`` / ``test`` seed torch with --seed, then build the generator: its stream
    is (--seed, 0) whatever the process built before (a second run in one process, a test
    suite), so a run's masks do not depend on it."""
    options = SimpleNamespace(input_nc=3, output_nc=3, netG="unet_64", ngf=8, norm="batch",
                              no_dropout=False, init_type="normal", init_gain=0.02)
    _unet()
    torch.manual_seed(1234)
    assert generator_from_options(options, torch.device("cpu")).dropout_rng.tolist() == [1234, 0]
