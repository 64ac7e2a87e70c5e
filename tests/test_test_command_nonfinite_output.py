"""`fastp2p test` never saves a NaN or Inf translation as a black PNG with exit 0 (a checkpoint
whose BatchNorm running_var was set to -1 did, under --eval; such a file is now refused as it
loads, but finite weights that overflow float32 still give one): it stops with one line naming
the input image, and writes no fake_B for it."""
import torch

import fastp2p
import fastp2p.nn
from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, write_aligned_dataset


def test_a_nonfinite_translation_stops_the_run_naming_its_image(tmp_path, capsys, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    run = tmp_path / "ck" / "tiny"
    run.mkdir(parents=True)
    torch.save(fastp2p.UNet(3, 3, 5, ngf=4).state_dict(), run / "latest_net_G.pth")
    # the network's output overflowing, whatever its weights
    monkeypatch.setattr(fastp2p.nn, "graphed",
                        lambda net: lambda x: torch.full_like(x, float("nan")))
    assert main(tiny_test_argv(data, tmp_path / "ck", tmp_path / "results")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "test/000.png: the generator's output (fake_B) holds NaN or Inf" in err, err
    assert not list((tmp_path / "results").rglob("*fake_B*"))
