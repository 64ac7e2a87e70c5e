"""help() on the public API shows fastp2p's own docstrings, not nn.Module's "Should be
overridden by all subclasses." or a bare ``off()`` (QA r40 N2)."""
import pydoc

import pytest

import fastp2p
from fastp2p.nn import folding
from fastp2p.ops import deconv_phases, onednn_packed

MODULES_PLACEHOLDER = "Should be overridden by all subclasses"


@pytest.mark.parametrize("method", [fastp2p.UNet.forward, fastp2p.GANLoss.forward],
                         ids=["UNet", "GANLoss"])
def test_forward_has_its_own_docstring(method):
    text = pydoc.render_doc(method, renderer=pydoc.plaintext)
    assert MODULES_PLACEHOLDER not in text
    assert "Call the module" in text


@pytest.mark.parametrize("module, name, switch, words", [
    (folding, "folding_disabled", "_folding", "statistics path"),
    (onednn_packed, "packing_disabled", "_packing", "plain convolutions"),
    (deconv_phases, "phases_disabled", "_phases", "other forms")])
def test_each_off_switch_is_documented_under_its_name(module, name, switch, words):
    text = pydoc.render_doc(getattr(module, name), renderer=pydoc.plaintext)
    assert f"{name}()" in text and words in text
    with getattr(module, name)():
        assert not getattr(module, switch).on
    assert getattr(module, switch).on


def test_graphed_names_the_module_it_refers_to():
    assert "help(fastp2p.nn.graph_replay)" in fastp2p.graphed.__doc__
    assert "this module's docstring" not in fastp2p.graphed.__doc__
