"""Resume is bit-exact on CPU: N steps + save + load + N steps == 2N uninterrupted steps."""
import signal

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import (random_batches, signal_after_step, tiny_networks,
                                   train_argv, write_aligned_dataset)


def test_engine_state_round_trip_is_bit_exact(tmp_path):
    batches = random_batches(4, size=64)
    netG, netD = tiny_networks(num_downs=6, use_dropout=True)  # dropout: the RNG must resume too
    straight = Pix2PixEngine(netG, netD)
    torch.manual_seed(11)
    for batch in batches:
        straight.step(*batch)

    first_G, first_D = tiny_networks(num_downs=6, use_dropout=True)
    first = Pix2PixEngine(first_G, first_D)
    torch.manual_seed(11)
    for batch in batches[:2]:
        first.step(*batch)
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], first_G, first_D, {"engine": first.state_dict()})
    torch.manual_seed(999)  # whatever happens in between must not matter

    resumed_G, resumed_D = tiny_networks(seed=5, num_downs=6, use_dropout=True)
    folder.load_network(resumed_G, "latest", "G")
    folder.load_network(resumed_D, "latest", "D")
    resumed = Pix2PixEngine(resumed_G, resumed_D)
    resumed.load_state_dict(folder.load_train_state("latest")["engine"])
    for batch in batches[2:]:
        resumed.step(*batch)
    assert resumed.steps == straight.steps == 4
    for a, b in zip(list(netG.state_dict().values()) + list(netD.state_dict().values()),
                    list(resumed_G.state_dict().values()) + list(resumed_D.state_dict().values())):
        assert torch.equal(a, b)
    assert resumed.read_losses() == straight.read_losses()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_signal_saves_and_continue_train_resumes_bit_exactly(tmp_path, monkeypatch, capsys,
                                                             signal_number):
    data = write_aligned_dataset(tmp_path / "data", size=64)
    # 4 pairs x (1 + 1) epochs = 8 steps; dropout is on in unet_64, so the RNG state matters.
    argv = train_argv(data, tmp_path / "straight", size=64)
    assert main(argv) == 0
    straight = torch.load(tmp_path / "straight/tiny/latest_net_G.pth", weights_only=True)

    handlers_before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with monkeypatch.context() as patch:
        signal_after_step(patch, 3, signal_number)  # in the middle of epoch 1
        code = main(train_argv(data, tmp_path / "resumed", size=64))
    assert code == 128 + signal_number
    assert f"{signal.Signals(signal_number).name} received" in capsys.readouterr().err
    state = CheckpointFolder(tmp_path / "resumed", "tiny").load_train_state("latest")
    position = ("epoch", "epoch_batches", "images", "epoch_images")
    assert {key: state["progress"][key] for key in position} == {
        "epoch": 1, "epoch_batches": 3, "images": 3, "epoch_images": 3}
    # handlers restored (whatever they were: a background shell starts us with SIGINT ignored)
    assert {sig: signal.getsignal(sig) for sig in handlers_before} == handlers_before

    assert main(train_argv(data, tmp_path / "resumed", "--continue_train", size=64)) == 0
    resumed = torch.load(tmp_path / "resumed/tiny/latest_net_G.pth", weights_only=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    log = (tmp_path / "resumed/tiny/loss_log.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in log[1:]] == [str(s) for s in range(1, 9)]
