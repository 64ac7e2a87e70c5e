"""norm_act_reference is the math, not a backend: a function there with a launcher's name but
not its signature (a norm_act_fwd without num_batches_tracked) reads as a launcher it is not.
The reference backend (fastp2p.ops.backends.reference) holds the launchers."""
import inspect

import pytest

from fastp2p.ops import norm_act_reference
from fastp2p.ops.backends import contract, reference


@pytest.mark.parametrize("launcher", contract.LAUNCHERS)
def test_the_oracle_names_no_launcher_it_does_not_implement(launcher):
    if hasattr(norm_act_reference, launcher):
        assert (inspect.signature(getattr(norm_act_reference, launcher))
                == inspect.signature(getattr(reference, launcher)))
