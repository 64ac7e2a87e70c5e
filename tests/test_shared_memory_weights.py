"""A network whose weights are in shared memory (``share_memory()``, as torch.multiprocessing
hands them to workers) is not served from the cached folded / packed weight copies
(fastp2p.nn.folding): another process's in-place write moves neither the tensors' addresses nor
their version counters, so the cache could not see it, and the next eval forward would compute
with the old weights."""
import copy

import torch
import torch.multiprocessing as mp

import fastp2p
from helpers.tolerances import FP32_NETWORK, assert_close


def _scale_weights(net):
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(0.8)


def test_an_eval_forward_sees_weights_another_process_wrote(one_thread):
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, ngf=8, norm="batch").eval()
    net.share_memory()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        net(image)  # where the cache would be built
        child = mp.get_context("spawn").Process(target=_scale_weights, args=(net,))
        child.start()
        child.join()
        assert child.exitcode == 0
        unshared = copy.deepcopy(net)  # private copies of the new weights
        assert not next(unshared.parameters()).is_shared()
        assert_close(net(image), unshared(image), FP32_NETWORK, "after the child's write")
