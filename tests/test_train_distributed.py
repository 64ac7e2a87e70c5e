"""Two gloo processes, each on half of a batch, update the weights like one process on all of it."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastp2p.train.distributed import ProcessInfo, shutdown_processes, wrap_for_data_parallel
from fastp2p.train.engine import Pix2PixEngine
from helpers.torchrun_helpers import free_port
from helpers.train_helpers import random_batches, tiny_networks

STEPS = 2


def _worker(rank, world_size, port, batches, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        info = ProcessInfo(rank, world_size, torch.device("cpu"))
        netG, netD = tiny_networks(norm="instance")
        engine = Pix2PixEngine(wrap_for_data_parallel(netG, info, False),
                               wrap_for_data_parallel(netD, info, False))
        for real_A, real_B in batches:
            half = real_A.shape[0] // world_size
            engine.step(real_A[rank * half:(rank + 1) * half],
                        real_B[rank * half:(rank + 1) * half])
        torch.save({"G": netG.state_dict(), "D": netD.state_dict(),
                    "dropout_rng": netG.dropout_rng.clone()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        engine = None  # its DDP reducers go before the group (see shutdown_processes)
    finally:
        shutdown_processes(ProcessInfo(rank, world_size, torch.device("cpu")))


def test_two_gloo_processes_match_one_process_on_the_whole_batch(tmp_path):
    batches = random_batches(STEPS, batch_size=2)
    mp.spawn(_worker, args=(2, free_port(), batches, str(tmp_path)), nprocs=2, join=True)

    netG, netD = tiny_networks(norm="instance")
    engine = Pix2PixEngine(netG, netD)
    for real_A, real_B in batches:
        engine.step(real_A, real_B)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # each rank keeps its own dropout stream: DDP does not broadcast rank 0's over it
    assert ranks[0]["dropout_rng"][0] != ranks[1]["dropout_rng"][0]
    start_G, start_D = tiny_networks(norm="instance")
    for which, net, start in (("G", netG, start_G), ("D", netD, start_D)):
        for name, param in net.named_parameters():
            assert not torch.equal(param, start.state_dict()[name])
            # Conv biases in front of an InstanceNorm have an exactly-zero true gradient; Adam
            # turns the rounding noise left in it (< 1e-5) into +-lr steps, so only bound those.
            zero_gradient = param.grad.abs().max() < 1e-5  # real ones here are > 1e-3
            for state in ranks:
                if zero_gradient:
                    assert (state[which][name] - param).abs().max() <= 2 * 2e-4 * STEPS
                else:
                    torch.testing.assert_close(state[which][name], param.detach(),
                                               rtol=1e-5, atol=1e-6)
