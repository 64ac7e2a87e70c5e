"""The benchmark peers of the engine options that are off by default: each is CUDA only, runs
the graphed bf16 channels-last engine with its option(s) on, the peer it is measured against
lacks them, and it comes after the torch.compile peers."""
import pytest

from fastp2p.bench.peer_specs import PEER_NAMES, peer_by_name

GRAPHED_BF16 = {"precision": "bf16", "channels_last": True, "cuda_graph": True}
# peer: (the options it adds to GRAPHED_BF16, the peer whose row it is read against)
OPTION_PEERS = {
    "fastp2p-step-losses": ({"fused_step_losses": True}, "fastp2p"),
    "fastp2p-side-streams": ({"side_streams": True}, "fastp2p"),
    "fastp2p-optimizer-overlap": ({"master_weights": True, "optimizer_overlap": True},
                                  "fastp2p-master-weights"),
    "fastp2p-split-conv-backward": ({"split_conv_backward": True}, "fastp2p"),
}


@pytest.mark.parametrize("name", OPTION_PEERS)
def test_the_benchmark_peer_switches_the_option_on_cuda_only(name):
    added, baseline = OPTION_PEERS[name]
    peer = peer_by_name(name)
    assert peer.cuda_only and peer.options("cuda") == {**GRAPHED_BF16, **added}
    option = list(added)[-1]
    assert option not in peer_by_name(baseline).options("cuda")
    assert PEER_NAMES.index(name) > PEER_NAMES.index("compile-max-autotune")


def test_the_master_weights_peer_switches_master_weights_on():
    assert peer_by_name("fastp2p-master-weights").options("cuda")["master_weights"] is True
