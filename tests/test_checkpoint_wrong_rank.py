"""A reference-format network file whose convolution weight is not 4-d (``model.model.0.weight
= zeros(4)``) is refused with the ValueError of a checkpoint that does not fit: reading the
configuration off its shapes raised IndexError (``first.shape[1]``) in ``from_checkpoint`` and
in `fastp2p test`, whose check caught only ValueError."""
import pytest
import torch

import fastp2p
from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, write_aligned_dataset

NETWORKS = {
    "unet": (lambda: fastp2p.UNet(3, 3, 5, ngf=4), "model.model.0.weight"),
    "unet-last": (lambda: fastp2p.UNet(3, 3, 5, ngf=4), "model.model.3.weight"),
    "patchgan": (lambda: fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2), "model.0.weight"),
    "pixelgan": (lambda: fastp2p.PixelDiscriminator(6, ndf=4), "net.0.weight"),
}


@pytest.mark.parametrize("value", [torch.zeros(4), torch.zeros(()), torch.zeros(4, 3, 4)],
                         ids=["1d", "0d", "3d"])
@pytest.mark.parametrize("network", NETWORKS)
def test_from_checkpoint_refuses_a_weight_of_the_wrong_rank(tmp_path, network, value):
    build, key = NETWORKS[network]
    net = build()
    state = net.state_dict()
    state[key] = value
    path = tmp_path / "net.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"{key} is \(.*\), not the 4-d weight of a "
                                         "convolution"):
        type(net).from_checkpoint(path)
    # loading into a built network: the diagnosis says the shape could not be read
    with pytest.raises(ValueError, match="checkpoint does not fit .*could not be inferred"):
        build().load_state_dict(state)


def test_fastp2p_test_refuses_a_weight_of_the_wrong_rank(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    state = fastp2p.UNet(3, 3, 5, ngf=4).state_dict()
    state["model.model.0.weight"] = torch.zeros(4)
    run = tmp_path / "ck" / "tiny"
    run.mkdir(parents=True)
    torch.save(state, run / "latest_net_G.pth")
    assert main(tiny_test_argv(data, tmp_path / "ck", tmp_path / "results")) != 0
    err = capsys.readouterr().err.strip()
    first_line = err.splitlines()[0]
    assert "checkpoint does not fit" in first_line and "could not be inferred" in first_line
    assert "Traceback" not in err
