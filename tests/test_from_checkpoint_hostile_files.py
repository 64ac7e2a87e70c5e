"""Hostile network files given to ``from_checkpoint``: each refused with one ValueError, as
``fastp2p test`` refuses them (``fastp2p.nn.checkpoint.weights_problem``, their one check).

A first convolution widened to 1024 filters made from_checkpoint build that network (tens of
GiB for 4096) before comparing the other entries; a negative BatchNorm running variance loaded
and gave NaN in eval mode (`fastp2p test --eval` wrote black images, exit 0); Inf, complex,
bool and integer weights loaded (complex with only torch's ComplexWarning), a sparse or meta
tensor gave torch's multi-line RuntimeError, a folder named x.pth IsADirectoryError, and a
pickle.dump file torch's "Detected pickle protocol 4" warning before fastp2p's error; a sparse
tensor in a file, on torch 2.14, its warning that it validates sparse tensors before fastp2p's
line."""
import pickle
import warnings

import pytest
import torch

import fastp2p
from fastp2p.train.checkpoints import CheckpointFolder

FIRST = "model.model.0.weight"


def _state():
    return fastp2p.UNet(3, 3, 5, ngf=4, norm="batch").state_dict()


@pytest.mark.parametrize("network, key", [("UNet", FIRST),
                                          ("PatchDiscriminator", "model.0.weight")])
def test_a_widened_first_weight_is_refused_before_the_network_is_built(monkeypatch, network, key):
    cls = getattr(fastp2p, network)
    state = (_state() if network == "UNet"
             else fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2).state_dict())
    state[key] = torch.zeros(1024, *state[key].shape[1:])
    built_on = []
    init = cls.__init__

    def recording_init(self, *args, **kwargs):
        built_on.append(torch.empty(()).device.type)  # the default device it is built on
        init(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", recording_init)
    with pytest.raises(ValueError, match="shape mismatch"):
        cls.from_checkpoint(state)
    assert built_on == ["meta"]


def test_widths_past_what_torch_can_size_are_one_value_error():
    state = _state()
    state[FIRST] = torch.zeros(1).expand(2 ** 26, 3, 4, 4)  # no memory: one element, repeated
    with pytest.raises(ValueError, match=r"^the state_dict: its shapes ask for UNet\(.*ngf="
                                         r"67108864.*a network too large to build"):
        fastp2p.UNet.from_checkpoint(state)


def _negative_variance(state):
    key = next(key for key in state if key.endswith("running_var"))
    state[key] = -torch.ones_like(state[key])
    return key, "negative variance"


def _set_first(value, why):
    def edit(state):
        state[FIRST] = value(state[FIRST])
        return FIRST, why
    return edit


EDITS = {
    "negative-running-var": _negative_variance,
    "inf": _set_first(lambda w: torch.full_like(w, float("inf")), "NaN or Inf"),
    "complex64": _set_first(lambda w: w.to(torch.complex64), "complex64 values"),
    "bool": _set_first(lambda w: w.bool(), "bool values"),
    "int32": _set_first(lambda w: w.int(), "int32 values"),
    "sparse": _set_first(lambda w: w.to_sparse(), "sparse_coo, not network weights"),
    "meta": _set_first(lambda w: w.to("meta"), "meta tensor"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_from_checkpoint_refuses_what_fastp2p_test_refuses(tmp_path, edit):
    state = _state()
    key, why = EDITS[edit](state)
    folder = CheckpointFolder(tmp_path, "run", advice="train again")
    folder.path.mkdir()
    torch.save(state, folder.file("latest", "net_G.pth"))
    # no ComplexWarning or other word of torch's: loading a sparse tensor from a file, torch
    # 2.14 warned that it validates it, before the one line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=rf"^the state_dict: {key} .*{why}[^\n]*$"):
            fastp2p.UNet.from_checkpoint(state)
        # fastp2p test and --continue_train: the same check, the same words
        with pytest.raises(ValueError,
                           match=rf"latest_net_G.pth: {key} .*{why}[^\n]*; train again$"):
            folder.read_network("latest", "G")


def test_a_folder_named_like_a_network_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "x.pth").mkdir()
    with pytest.raises(ValueError, match=r"x.pth'?: is a folder, not a network file$"):
        fastp2p.UNet.from_checkpoint(tmp_path / "x.pth")


def test_a_pickle_of_another_protocol_is_refused_without_torchs_warning(tmp_path):
    path = tmp_path / "p4.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="a pickle that is not a PyTorch checkpoint"):
            fastp2p.UNet.from_checkpoint(path)
