"""The inference fast paths' off-switches act per thread: a benchmark (or any caller) timing the
plain path inside ``with ..._disabled():`` must not switch the fast path off for a request that
another thread serves at the same moment."""
import threading

import pytest

from fastp2p.nn import folding
from fastp2p.ops import deconv_phases, onednn_packed

SWITCHES = {"folding": (folding.folding_disabled, lambda: folding._folding.on),
            "packing": (onednn_packed.packing_disabled, lambda: onednn_packed._packing.on),
            "phases": (deconv_phases.phases_disabled, lambda: deconv_phases._phases.on)}


@pytest.mark.parametrize("name", SWITCHES)
def test_a_block_in_one_thread_leaves_the_others_on(name):
    disabled, is_on = SWITCHES[name]
    inside, leave = threading.Event(), threading.Event()
    seen_inside = []

    def hold_the_switch_off():
        with disabled():
            seen_inside.append(is_on())
            inside.set()
            leave.wait(timeout=30)

    holder = threading.Thread(target=hold_the_switch_off)
    holder.start()
    try:
        assert inside.wait(timeout=30)
        assert is_on(), "the block in another thread switched this thread's fast path off"
        seen_in_a_new_thread = []
        reader = threading.Thread(target=lambda: seen_in_a_new_thread.append(is_on()))
        reader.start()
        reader.join()
        assert seen_in_a_new_thread == [True]
    finally:
        leave.set()
        holder.join()
    assert seen_inside == [False]
    assert is_on()


@pytest.mark.parametrize("name", SWITCHES)
def test_blocks_nest_and_restore(name):
    disabled, is_on = SWITCHES[name]
    with disabled():
        with disabled():
            assert not is_on()
        assert not is_on()
    assert is_on()
