"""Two gloo processes set up as `torchrun --nproc_per_node=2 -m fastp2p train` sets them up, on
packed data: each rank trains on its own half of every epoch, and the halves are disjoint."""
import json
from pathlib import Path

import torch.multiprocessing as mp

from fastp2p.bench.end_to_end import make_packed_set
from fastp2p.cli import build_parser
from fastp2p.data import packed_loader
from fastp2p.train import train_command
from helpers.torchrun_helpers import as_torchrun_rank, free_port

PAIRS, EPOCHS = 8, 2


def _rank(rank, port, packed, out):
    as_torchrun_rank(rank, port)
    seen = []
    iterate = packed_loader.PackedDeviceLoader.__iter__

    def recording(loader):      # the batches this rank's training loop receives
        epoch = []
        seen.append(epoch)
        for batch in iterate(loader):
            epoch += batch["A_paths"]
            yield batch
    packed_loader.PackedDeviceLoader.__iter__ = recording
    args = build_parser().parse_args([
        "train", "--dataroot", packed, "--name", "ranks", "--checkpoints_dir", out,
        "--device", "cpu", "--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--norm",
        "instance", "--load_size", "36", "--crop_size", "32", "--batch_size", "2",
        "--n_epochs", str(EPOCHS), "--n_epochs_decay", "0"])
    code = train_command.run(args)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"code": code, "seen": seen}))


def test_each_rank_trains_on_a_disjoint_half_of_the_packed_pairs(tmp_path):
    packed = make_packed_set(tmp_path, PAIRS, 36)
    mp.spawn(_rank, args=(free_port(), str(packed), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [rank["code"] for rank in ranks] == [0, 0]
    everything = {f"{i:07d}.jpg" for i in range(PAIRS)}
    for epoch in range(EPOCHS):
        halves = [[Path(p).name for p in rank["seen"][epoch]] for rank in ranks]
        assert all(len(half) == len(set(half)) == PAIRS // 2 for half in halves)
        assert not set(halves[0]) & set(halves[1])
        assert set(halves[0]) | set(halves[1]) == everything
    assert ranks[0]["seen"][0] != ranks[0]["seen"][1]       # reshuffled each epoch
    assert (tmp_path / "ranks" / "latest_net_G.pth").is_file()
