"""The README's "Use" block runs as written and the checkpoint it loads is what G holds at its
end (it used to call init_weights(G) after the load, silently throwing the weights away). Run
with ngf/ndf 4 in place of 64, so that the U-Net-256 checkpoint it reads is small."""
import re
from pathlib import Path

import pytest
import torch

import fastp2p

README = Path(__file__).resolve().parents[1] / "README.md"


def _use_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Use\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(not README.exists(), reason="no README.md beside tests/ (an installed copy)")
def test_the_use_block_keeps_the_checkpoint_it_loads(tmp_path, monkeypatch):
    code = _use_block().replace("ngf=64", "ngf=4").replace("ndf=64", "ndf=4")
    torch.manual_seed(0)
    saved = fastp2p.UNet(3, 3, 8, ngf=4, norm_layer=torch.nn.BatchNorm2d, use_dropout=True)
    with torch.no_grad():
        for key, tensor in saved.state_dict().items():
            if tensor.is_floating_point():
                tensor.normal_()   # none of them a fresh network's values
            if key.endswith("running_var"):
                tensor.abs_()      # a variance: a negative one is refused as it loads
    torch.save(saved.state_dict(), tmp_path / "latest_net_G.pth")
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(code, "README.md (Use)", "exec"), names)
    for network in (names["G"], names["G2"]):
        got = network.state_dict()
        assert all(torch.equal(got[key], value) for key, value in saved.state_dict().items())
