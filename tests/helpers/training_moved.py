"""Whether a run trained at all: each network's weights moved from their start at least half
as far as a peer run's did from the same start.

Adam's steps are about lr per element whatever the gradient's precision, so two runs that both
train move about equally far (a bf16 run against its fp32 peer, a fused one against today's
path), while an untouched network does not move. The loss comparisons of a low-precision run
allow so much that they cannot tell the two apart; this can, without a bound sized on a GPU.
"""
import torch

from helpers.tolerances import relative_error


def snapshot(*nets):
    """Copies of every floating-point parameter of ``nets`` (their start)."""
    return [[p.detach().clone() for p in net.parameters()] for net in nets]


def _flat(tensors):
    return torch.cat([t.detach().double().cpu().flatten() for t in tensors])


def assert_moved_like_the_peer(nets, peers, starts, fraction=0.5):
    """Each of ``nets`` moved from ``starts`` (``snapshot``, taken before both runs) at least
    ``fraction`` as far as the matching network of ``peers`` did."""
    for index, (net, peer, start) in enumerate(zip(nets, peers, starts)):
        origin = _flat(start)
        moved = relative_error(_flat(net.parameters()), origin)
        peer_moved = relative_error(_flat(peer.parameters()), origin)
        assert peer_moved > 0, f"network {index}: the peer run did not train either"
        assert moved >= fraction * peer_moved, (
            f"network {index} moved {moved:.3g} from its start, its peer {peer_moved:.3g}")
