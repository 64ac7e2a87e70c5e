"""--continue_train from a folder holding a generator alone (a downloaded pretrained
latest_net_G.pth: no discriminator, no training state) is refused in one line naming the missing
discriminator and what to do, before any line says that networks are loaded (QA: it announced
"latest_net_G.pth and _net_D.pth ...: loading the networks", then failed advising "train
first")."""
import torch

from fastp2p.cli import main
from fastp2p.reference import UnetGenerator, get_norm_layer
from helpers.train_helpers import train_argv, write_aligned_dataset


def test_a_generator_alone_is_refused_naming_the_missing_discriminator(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    run = tmp_path / "ckpt" / "tiny"
    run.mkdir(parents=True)
    netG = UnetGenerator(3, 3, 5, ngf=4, norm_layer=get_norm_layer("batch"), use_dropout=True)
    torch.save(netG.state_dict(), run / "latest_net_G.pth")
    assert main(train_argv(data, tmp_path / "ckpt", "--continue_train", "--no_html")) == 1
    captured = capsys.readouterr()
    assert "loading the networks" not in captured.out, captured.out
    # the refusal, one line, after the warning that the run folder holds no train_opt.txt
    warning, error = captured.err.strip().splitlines()
    assert "train_opt.txt cannot be read" in warning, warning
    assert error.startswith("fastp2p train: error: "), error
    assert f"{run / 'latest_net_D.pth'} is missing" in error, error
    assert "a generator alone" in error and "another --name" in error, error
    assert "train first" not in error
    assert sorted(path.name for path in run.iterdir()) == ["latest_net_G.pth"]
