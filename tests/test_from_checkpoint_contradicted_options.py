"""from_checkpoint given a value the file's keys tell otherwise (num_downs=6 for a 5-level file)
names that value first (QA r54: the message led with the norm settings the keys cannot tell,
then "or check num_downs=", above 38 shape mismatches)."""
import pytest
import torch

import fastp2p


@pytest.mark.parametrize("cls, built, given, said", [
    (fastp2p.UNet, dict(input_nc=3, output_nc=3, num_downs=5, ngf=8), dict(num_downs=6),
     "num_downs=5 (given 6)"),
    (fastp2p.UNet, dict(input_nc=3, output_nc=3, num_downs=5, ngf=8), dict(ngf=16),
     "ngf=8 (given 16)"),
    (fastp2p.PatchDiscriminator, dict(input_nc=6, ndf=8, n_layers=2), dict(n_layers=3),
     "n_layers=2 (given 3)")])
def test_a_given_value_the_keys_contradict_is_named_first(tmp_path, cls, built, given, said):
    path = tmp_path / "net.pth"
    torch.save(cls(**built).state_dict(), path)
    with pytest.raises(ValueError) as refused:
        cls.from_checkpoint(path, **given)
    first_line = str(refused.value).splitlines()[0]
    assert first_line.endswith(f"its keys say {said}: leave those out to build what the file "
                               "holds"), first_line
    assert "cannot be inferred" not in first_line


def test_a_value_the_keys_agree_with_loads(tmp_path):
    path = tmp_path / "net.pth"
    torch.save(fastp2p.UNet(3, 3, 5, ngf=8).state_dict(), path)
    assert fastp2p.UNet.from_checkpoint(path, num_downs=5, ngf=8).config_string() \
        == fastp2p.UNet(3, 3, 5, ngf=8).config_string()
