"""--channels-last under torchrun: DistributedDataParallel's gradient buckets keep the strides
the weights had when it wrapped them, and the engine converted the wrapped networks to
channels-last afterwards, so every step copied each convolution's gradient across layouts into
its bucket and back (torch: "Grad strides do not match bucket view strides"; on a GPU, a
strided copy per weight per step). The networks are now converted before they are wrapped,
and the engine refuses networks wrapped in the other layout. A gloo group of one process,
in this process."""
import gc
import warnings

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fastp2p.train.distributed import ProcessInfo, wrap_for_data_parallel
from fastp2p.train.engine import Pix2PixEngine
from helpers.torchrun_helpers import free_port
from helpers.train_helpers import random_batches, tiny_networks


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        gc.collect()   # the DDP reducers go before the group (distributed.shutdown_processes)
        dist.destroy_process_group()


def test_networks_wrapped_channels_last_step_with_their_buckets_laid_out_alike(
        one_process_group):
    job = ProcessInfo(0, 2, torch.device("cpu"))   # wrapped as a rank of a torchrun job is
    netG, netD = (wrap_for_data_parallel(net, job, False, channels_last=True)
                  for net in tiny_networks())
    engine = Pix2PixEngine(netG, netD, channels_last=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in random_batches(2, size=32):
            engine.step(*batch)
    assert [str(w.message)[:40] for w in caught if "strides" in str(w.message)] == []
    conv = netG.module.model.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_the_engine_refuses_networks_wrapped_before_their_channels_last_conversion(
        one_process_group):
    netG, netD = (DistributedDataParallel(net) for net in tiny_networks())
    with pytest.raises(ValueError, match="before wrapping them in DistributedDataParallel"):
        Pix2PixEngine(netG, netD, channels_last=True)
    assert netG.module.model.model[0].weight.is_contiguous()   # refused before converting
