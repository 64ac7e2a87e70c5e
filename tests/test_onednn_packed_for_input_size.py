"""CPU inference packs each weight for oneDNN for the input's size (fastp2p.ops.onednn_packed).

oneDNN's convolution picks its weight layout per input size. Packed for none (torch's made-up
size), a weight could be in a layout the real input's convolution does not take, and oneDNN then
reordered it on every call through its slow generic reorder: a U-Net-256 forward took 3x the
reference's time on a 2-core AMD EPYC of family 23 (AVX2; benchmarks/NOTES.md, "Stop 46"). The
check here is oneDNN's own log of what it ran: no reorder in a forward after the first. (On a
CPU whose layouts do not depend on the size, as the AVX-512 ones measured before, the old packing
logged none either: there this only guards.)"""
import os
import threading
import subprocess
import sys
import textwrap

import pytest
import torch

from fastp2p.nn import folding
from fastp2p.ops import onednn_packed
from fastp2p.ops.stand_ins import PACKED, PHASES, stand_in
from helpers.network_checks import randomize_batchnorms, unet_pair
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close

pytestmark = pytest.mark.skipif(not onednn_packed.available(),
                                reason="this torch build has no oneDNN packed convolutions")

# A U-Net with 64 to 512 channels (where AVX2's blocked layouts differ by input size), on batches
# of two sizes by turns; oneDNN's log is on for every forward after each size's first.
_FORWARDS = textwrap.dedent("""
    import torch
    from fastp2p import UNet
    torch.manual_seed(0)
    net = UNet(3, 3, 5, ngf=64).eval()
    for batch in (1, 2, 1):
        x = torch.rand(batch, 3, 32, 32) * 2 - 1
        with torch.no_grad():
            net(x)
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                print("LOGGED FORWARD", flush=True)
                net(x)
""")


@pytest.mark.parametrize("form", ["onednn", "phases"])
def test_a_unet_forward_makes_oneDNN_reorder_no_weight(tmp_path, form):
    env = dict(os.environ, FASTP2P_CACHE=str(tmp_path), FASTP2P_CPU_DECONV=form)
    # cwd: not the checkout, whose fastp2p/ source folder would shadow the installed package
    run = subprocess.run([sys.executable, "-c", _FORWARDS], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    logged = run.stdout.split("LOGGED FORWARD")[1:]
    assert len(logged) == 3
    for forward in logged:
        executed = [line for line in forward.splitlines() if ",primitive,exec," in line]
        assert any(",convolution," in line for line in executed), forward  # the log is on
        assert [line for line in executed if ",reorder," in line] == []


def test_opaque_layouts_need_the_input_size():
    conv = torch.nn.ConvTranspose2d(4, 6, 4, 2, 1)
    norm = torch.nn.BatchNorm2d(6).eval()
    for layout in (PACKED, PHASES):
        for build in (lambda: stand_in(conv, conv.weight, conv.bias, layout),
                      lambda: folding.conv_in_layout(conv, layout),
                      lambda: folding.folded_conv(conv, norm, layout)):
            with pytest.raises(ValueError, match="input_size"):
                build()


@pytest.fixture
def recorded(monkeypatch):
    """(the input sizes each packing is for, as they are made; a small U-Net in eval mode whose
    transposed convolutions run packed; the float64 reference U-Net with the same weights and
    running statistics, far from their defaults)."""
    packs = []
    pack = onednn_packed.pack
    monkeypatch.setattr(onednn_packed, "pack",
                        lambda conv, w, size: packs.append(tuple(size)) or pack(conv, w, size))
    monkeypatch.setenv("FASTP2P_CPU_DECONV", "onednn")
    ours, theirs = unet_pair("batch", num_downs=5, ngf=4)
    return packs, randomize_batchnorms(ours, 0).eval(), randomize_batchnorms(theirs, 0).eval()


def _forward(recorded, batch):
    """The packings one forward of a batch of ``batch`` 32x32 images makes, and its output."""
    packs, ours, _ = recorded
    before = len(packs)
    with torch.no_grad():
        out = ours(torch.rand(batch, 3, 32, 32) * 2 - 1)
    return packs[before:], out


def _fill_kept(recorded) -> None:
    """Forwards of batch 1 to MAX_STAND_INS: every packing a module keeps, taken."""
    for batch in range(1, 1 + folding.MAX_STAND_INS):
        _forward(recorded, batch)


def test_inputs_of_ever_new_sizes_pack_no_more_than_max_stand_ins(recorded):
    """Each input size gets its own packing, kept for that size's next call, while fewer than
    MAX_STAND_INS are kept; sizes seen once after that run from a plain copy, packing nothing
    (on 21eda25 each packed every layer again, dropping the least recently used)."""
    first, _ = _forward(recorded, 1)
    assert first and all(size[0] == 1 for size in first)
    assert _forward(recorded, 1)[0] == []                    # the same size: packed already
    for batch in range(2, 1 + folding.MAX_STAND_INS):
        assert len(_forward(recorded, batch)[0]) == len(first)   # a new size: packed for it
    for batch in range(1 + folding.MAX_STAND_INS, 4 * folding.STALE_AFTER):
        assert _forward(recorded, batch)[0] == []
    for m in recorded[1].modules():
        for cache in (folding._cache, folding._layout_cache):
            assert len(cache.get(m, {})) <= folding.MAX_STAND_INS


def test_five_sizes_by_turns_pack_four_once_and_run_the_fifth_plain(recorded):
    """The review's case (NOTES, "Stop 46"): a fifth size by turns repacked every layer on
    every call, 1.25x slower than never packing. Now four sizes keep their packings and the
    fifth runs plain, round after round."""
    _fill_kept(recorded)
    for _ in range(2 * folding.STALE_AFTER):
        for batch in range(1, 2 + folding.MAX_STAND_INS):
            assert _forward(recorded, batch)[0] == []


def test_a_size_that_replaces_the_kept_ones_is_packed_once_they_go_stale(recorded):
    """Sizes 1-4 once, then size 5 for good (a server's warm-up, then its traffic): size 5
    runs plain until the least recently used packing has gone unused for STALE_AFTER calls,
    then is packed once and kept."""
    _fill_kept(recorded)
    packed_at = [call for call in range(4 * folding.STALE_AFTER)
                 if _forward(recorded, 1 + folding.MAX_STAND_INS)[0]]
    assert packed_at == [folding.STALE_AFTER - folding.MAX_STAND_INS + 1]


def test_sizes_run_plain_give_the_reference_numbers(recorded):
    """A size without a packing of its own runs from the plain copy of the same folded
    weights: the reference module's output within DESIGN 5's fp32 whole-network bound."""
    packs, ours, theirs = recorded
    _fill_kept(recorded)
    x = torch.rand(1 + folding.MAX_STAND_INS, 3, 32, 32) * 2 - 1
    before = len(packs)
    with torch.no_grad():
        assert_close(ours(x), theirs(x.double()), FP32_NETWORK, "run plain")
    assert len(packs) == before     # ran plain, not packed
    for net in (ours, theirs):      # the plain copy follows a change of a source tensor
        net.model.model[1].model[2].running_var.mul_(3)
    with torch.no_grad():
        assert_close(ours(x), theirs(x.double()), FP32_NETWORK, "run plain after a change")
    assert any(entry is folding._cache[m].plain for m in ours.modules() if m in folding._cache
               for entry in folding.folded_for(ours))
    ours.double()                   # replaced tensors: every stand-in goes, the plain ones too
    assert folding.folded_for(ours) == []


def test_sizes_run_plain_share_a_kept_channels_last_copy():
    """A transposed convolution that keeps a channels-last copy (its GEMM form, measured for
    one size) runs the sizes without a packing from that copy, not from a second one of the
    same weights (a review found two: 16 MB more per 512-channel layer of U-Net-256)."""
    conv = torch.nn.ConvTranspose2d(8, 4, 4, 2, 1)
    gemm = folding.conv_in_layout(conv, torch.channels_last, (1, 8, 4, 4))
    for batch in range(2, 1 + folding.MAX_STAND_INS):
        assert folding.conv_in_layout(conv, PACKED, (batch, 8, 4, 4)) is not gemm
    assert folding.conv_in_layout(conv, PACKED, (9, 8, 4, 4)) is gemm
    assert folding._layout_cache[conv].plain is None
    # ... while that copy holds the weights: after they change, a size run plain computes
    # with the new ones (a kept copy handed out unchecked ran the old)
    with torch.no_grad():
        conv.weight.mul_(2)
        x = torch.randn(9, 8, 4, 4).contiguous(memory_format=torch.channels_last)
        assert_close(folding.conv_in_layout(conv, PACKED, tuple(x.shape))(x), conv(x),
                     FP32_SINGLE_OP, "a size run plain after the weights changed")


@pytest.mark.parametrize("batches", [(1, 2), (1, 2, 3, 4, 5, 6)])
def test_threads_running_one_network_share_its_packings(recorded, batches):
    """A server's threads share the cached stand-ins: a hit keeps its slot in place (moved to
    the end of the order of use, never taken out and put back), so on two sizes no thread finds
    it missing and packs the weights again; and ``folded_for`` reads the entries meanwhile
    without 'mutated during iteration' (it did on 4bc0138). On six sizes, more than a module
    keeps, the threads' lookups choose between packing and the plain copy together: every
    output stays the reference's (packed and plain differ in rounding only)."""
    packs, ours, _ = recorded
    inputs = [torch.rand(batch, 3, 32, 32) * 2 - 1 for batch in batches]  # a slot each a layer
    with torch.no_grad():
        expected = [ours(x) for x in inputs]
    first = len(packs)
    exact = len(batches) <= folding.MAX_STAND_INS
    failures = []

    def serve():
        try:
            for step in range(30):
                i = step % len(inputs)
                with torch.no_grad():
                    torch.testing.assert_close(ours(inputs[i]), expected[i],
                                               **(dict(rtol=0, atol=0) if exact else {}))
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    def look():     # what a CUDA graph capture reads (fastp2p.nn.graph_replay)
        try:
            while any(thread.is_alive() for thread in threads[:-1]):
                folding.folded_for(ours)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=serve) for _ in range(4)] + [threading.Thread(target=look)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)     # threads switch between almost any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    if exact:
        assert len(packs) == first
