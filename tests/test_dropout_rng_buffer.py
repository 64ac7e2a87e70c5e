"""The U-Net's dropout stream (its non-persistent ``dropout_rng`` buffer, [seed, offset]) where
a drop-in user's own code handles buffers: a user's own DDP (which broadcasts rank 0's buffers
before every forward), a module built inside ``torch.inference_mode()``, torch's deferred
initialisation on the meta device (``to_empty``, ``load_state_dict(assign=True)``: no state_dict
holds the buffer). Each rank, or module, keeps the masks of its own stream: the outputs of an
unwrapped U-Net with that stream (within DESIGN §5: the paths' bits may differ, other masks
differ by far more)."""
import os

import pytest
import torch
import torch.nn as nn
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import fastp2p
from helpers.tolerances import FP32_NETWORK, assert_close, relative_error
from helpers.torchrun_helpers import free_port


def _unet(norm="batch", seed=0):
    """num_downs 6: the smallest U-Net with a Dropout (in its one ngf*8 middle level)."""
    torch.manual_seed(seed)
    return fastp2p.UNet(3, 3, 6, 4, norm=norm, use_dropout=True)


def _image():
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _ddp_rank(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        net = _unet()  # the same weights on both ranks, as DDP wants them
        net.set_dropout_rng(100 + rank)
        ddp = DistributedDataParallel(net)
        outputs = [ddp(_image()).detach() for _ in range(2)]  # DDP broadcasts before each
        torch.save({"outputs": outputs, "dropout_rng": net.dropout_rng.clone()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        ddp = None  # its reducer goes before the group
    finally:
        dist.destroy_process_group()


def test_each_rank_of_a_users_own_ddp_draws_its_own_dropout_masks(tmp_path, one_thread):
    mp.spawn(_ddp_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, state in enumerate(ranks):
        alone = _unet()
        alone.set_dropout_rng(100 + rank)
        for step, out in enumerate(state["outputs"]):
            assert_close(out, alone(_image()), FP32_NETWORK, f"rank {rank} step {step}")
        assert torch.equal(state["dropout_rng"], alone.dropout_rng)
    assert relative_error(ranks[0]["outputs"][0], ranks[1]["outputs"][0]) > 0.01


def test_a_unet_built_inside_inference_mode_samples_with_dropout_outside_it(one_thread):
    """pix2pix's test-time recipe (the generator left in train mode: dropout as noise) on a
    network a serving process built and loaded inside inference_mode. Instance norm: a training
    BatchNorm's running statistics, inference tensors too, refuse the update in the reference
    module as well."""
    with torch.inference_mode():
        built_inside = _unet("instance")
    assert not built_inside.dropout_rng.is_inference()
    built_outside = _unet("instance")
    built_outside.set_dropout_rng(int(built_inside.dropout_rng[0]))  # built apart: other seeds
    with torch.no_grad():
        for step in range(2):  # the second call reads the offset the first one advanced
            assert_close(built_inside(_image()), built_outside(_image()), FP32_NETWORK,
                         f"step {step}")
    assert torch.equal(built_inside.dropout_rng, built_outside.dropout_rng)
    assert built_inside.dropout_rng[1] > 0


@pytest.mark.parametrize("nested", [False, True], ids=["unet", "inside-a-users-module"])
@pytest.mark.parametrize("recipe", ["to_empty", "assign"])
def test_a_meta_built_unet_gets_the_dropout_stream_construction_gives(recipe, nested, one_thread):
    """Built on meta under seed 5, then materialised with the weights of a U-Net built for real
    under seed 5: the stream is at offset 0, on the weights' device; training with dropout gives
    the outputs of that U-Net put on the same stream and advances the offset alike (the seed a
    U-Net takes at construction: tests/test_dropout_stream_per_unet.py)."""
    built = _unet(seed=5)
    weights = {name: value.clone() for name, value in built.state_dict().items()}
    with torch.device("meta"):
        meta_built = _unet(seed=5)
    root = nn.Sequential(meta_built) if nested else meta_built
    if nested:
        weights = {f"0.{name}": value for name, value in weights.items()}
    if recipe == "to_empty":
        root.to_empty(device="cpu")
        root.load_state_dict(weights)
    else:
        root.load_state_dict(weights, assign=True)
    assert meta_built.dropout_rng.device.type == "cpu"
    assert meta_built.dropout_rng[1] == 0
    built.set_dropout_rng(int(meta_built.dropout_rng[0]))
    for step in range(2):
        assert_close(meta_built(_image()), built(_image()), FP32_NETWORK, f"step {step}")
    assert torch.equal(meta_built.dropout_rng, built.dropout_rng)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # torch's, expected
def test_a_meta_unet_loaded_without_assign_stays_on_meta():
    """A load that copies into meta tensors leaves them there (torch's rule, with a warning per
    tensor): so does the stream, which a later to_empty then sets."""
    weights = _unet().state_dict()
    with torch.device("meta"):
        net = _unet()
    net.load_state_dict(weights)
    assert net.dropout_rng.is_meta and next(net.parameters()).is_meta
    net.to_empty(device="cpu")
    assert not net.dropout_rng.is_meta and net.dropout_rng[1] == 0
