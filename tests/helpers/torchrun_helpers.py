"""What the distributed tests share: a free local port, and a spawned process set up as
`torchrun --nproc_per_node=N` sets up each of its ranks (gloo on this machine)."""
import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_torchrun_rank(rank: int, port: int, world_size: int = 2) -> None:
    """torchrun's environment for ``rank``, and one thread (the ranks share this machine's
    cores), which OMP_NUM_THREADS makes train keep whatever the load: its automatic choice
    took 1 thread for a run resumed while the machine was busy where the uninterrupted run had
    taken 2, and the resumed weights differed in the last bits."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
