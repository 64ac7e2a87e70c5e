"""`fastp2p test` loads every weight of its generator from the run's file, so it draws none:
the --init_type draw on the meta-device generator it checks the file against imported
torch._dynamo (2-3 s of a 6 s test, and triton with it) and computed nothing, and the one on the
generator it loads into was discarded. The strict load still refuses a file that lacks a weight
or holds one of another shape."""
import shutil
import subprocess
import sys

import pytest
import torch

import fastp2p
from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv


def test_test_imports_torch_without_torch_dynamo(data, trained, tmp_path):
    argv = tiny_test_argv(data, trained, tmp_path / "results", "--num_test", "1")
    code = ("import sys\n"
            "from fastp2p.cli import main\n"
            f"code = main({argv!r})\n"
            "print(code, 'torch' in sys.modules, 'torch._dynamo' in sys.modules)\n")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 True False", done.stdout


def test_test_draws_no_initial_weights(data, trained, tmp_path, monkeypatch):
    drawn = []
    init_weights = fastp2p.init_weights

    def recorded(network, *args, **kwargs):
        drawn.append(next(network.parameters()).device.type)
        return init_weights(network, *args, **kwargs)
    monkeypatch.setattr(fastp2p, "init_weights", recorded)
    assert main(tiny_test_argv(data, trained, tmp_path / "results", "--num_test", "1")) == 0
    assert drawn == []


def _without_first_weight(state: dict) -> str:
    key = next(key for key in state if key.endswith(".weight"))
    del state[key]
    return key


def _first_weight_widened(state: dict) -> str:
    key = next(key for key in state if key.endswith(".weight"))
    state[key] = torch.randn(state[key].shape[0] + 1, *state[key].shape[1:])
    return key


@pytest.mark.parametrize("edit", [_without_first_weight, _first_weight_widened],
                         ids=["missing", "wrong-shape"])
def test_a_file_that_does_not_set_every_weight_is_still_refused(data, trained, tmp_path, capsys,
                                                                 edit):
    """A reference-style run folder (no manifest, no training state) whose G lacks a weight or
    holds one of another shape."""
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(trained, checkpoints)
    folder = checkpoints / "tiny"
    (folder / "latest_checkpoint.json").unlink()
    (folder / "latest_train_state.pth").unlink()
    network = folder / "latest_net_G.pth"
    state = torch.load(network, weights_only=True)
    key = edit(state)
    torch.save(state, network)
    capsys.readouterr()
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 1
    captured = capsys.readouterr()
    assert f"fastp2p test: error: {network}" in captured.err and key in captured.err, captured
    assert not (tmp_path / "results").exists()
