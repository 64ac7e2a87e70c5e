"""help() on the public API shows fastp2p's own docstrings, not nn.Module's "Should be
overridden by all subclasses." or a bare ``off()`` (QA r40 N2)."""
import pydoc

import pytest

import fastp2p
from fastp2p.nn.folding import folding_disabled

MODULES_PLACEHOLDER = "Should be overridden by all subclasses"


@pytest.mark.parametrize("method", [fastp2p.UNet.forward, fastp2p.GANLoss.forward],
                         ids=["UNet", "GANLoss"])
def test_forward_has_its_own_docstring(method):
    text = pydoc.render_doc(method, renderer=pydoc.plaintext)
    assert MODULES_PLACEHOLDER not in text
    assert "Call the module" in text


def test_folding_disabled_is_documented_under_its_name():
    text = pydoc.render_doc(folding_disabled, renderer=pydoc.plaintext)
    assert "folding_disabled()" in text and "statistics path" in text
    with folding_disabled():
        from fastp2p.nn.folding import _folding
        assert not _folding.on
    assert _folding.on


def test_graphed_names_the_module_it_refers_to():
    assert "help(fastp2p.nn.graph_replay)" in fastp2p.graphed.__doc__
    assert "this module's docstring" not in fastp2p.graphed.__doc__
