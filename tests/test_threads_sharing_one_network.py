"""Threads sharing one network, as a web server's do (QA r55): 16 threads calling one eval
fastp2p.UNet raised KeyError from the CPU weight caches (fastp2p.nn.folding: an OrderedDict read
while another thread reordered or dropped its entries), 3 of 14 runs, and once kept failing
after the threads were done; the caches now take a lock. fastp2p.graphed shares one capture's
static input and output between calls: two threads' calls would read each other's images; its
calls now take turns (driven on the CPU through stand-in captures)."""
import copy
import threading

import torch

import fastp2p
from fastp2p.nn.folding import MAX_STAND_INS
from helpers.graph_stand_in import OnCuda
from helpers.network_checks import eval_unet_with_statistics


def _inputs(count: int) -> list:
    """Batches of ``count`` shapes, more than the caches keep per layer."""
    shapes = [(1 + i % 3, 3, 32 * (1 + i % 2), 32 * (1 + (i // 2) % 3)) for i in range(count)]
    return [torch.rand(*shape, generator=torch.Generator().manual_seed(i)) * 2 - 1
            for i, shape in enumerate(shapes)]


def _in_threads(call, inputs, rounds: int) -> tuple[dict, list]:
    """``call`` on each input ``rounds`` times, one thread per input: (each input's outputs,
    the errors raised)."""
    outputs, errors = {i: [] for i in range(len(inputs))}, []

    def work(i):
        try:
            for _ in range(rounds):
                outputs[i].append(call(inputs[i]))
        except Exception as error:  # noqa: BLE001 - every error of a thread is the finding
            errors.append(repr(error))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outputs, errors


def call_in_inference_mode(net):
    def call(x):
        with torch.inference_mode():
            return net(x)
    return call


def test_threads_calling_one_unet_get_their_own_results():
    """The threads' first calls fill the caches (and measure the transposed convolutions'
    forms) together, as a server's first requests do: with the caches filled beforehand, the
    race did not show."""
    net, inputs = eval_unet_with_statistics(), _inputs(3 * MAX_STAND_INS)
    alone = copy.deepcopy(net)     # caches of its own, filled after the threads
    outputs, errors = _in_threads(call_in_inference_mode(net), inputs, rounds=20)
    assert errors == []
    with torch.inference_mode():
        expected = [alone(x) for x in inputs]
    for i, results in outputs.items():
        for result in results:
            torch.testing.assert_close(result, expected[i], rtol=1e-5, atol=1e-5)
    with torch.inference_mode():   # and the caches still serve a call afterwards
        torch.testing.assert_close(net(inputs[0]), expected[0], rtol=1e-5, atol=1e-5)


class _SlowForwardGraph:
    """A stand-in CUDA graph whose replay runs the forward on the static input into the static
    output, as a real replay does, slowly enough for other threads to run meanwhile."""

    def __init__(self, module, static_input, static_output):
        self.module, self.static_input, self.static_output = module, static_input, static_output

    def replay(self):
        threading.Event().wait(0.002)
        self.static_output.copy_(self.module(self.static_input))


def test_threads_calling_one_graphed_network_get_their_own_results(monkeypatch):
    from fastp2p.nn.graph_replay import GraphedModule, _Capture

    def capture(self, input):
        static_input = input.as_subclass(torch.Tensor).clone()
        output = self.module(static_input)
        graph = _SlowForwardGraph(self.module, static_input, output.clone())
        return output, _Capture(graph, static_input, graph.static_output,
                                self._tensors.state(), [], [])
    monkeypatch.setattr(GraphedModule, "_capture", capture)
    net = eval_unet_with_statistics()
    translate = fastp2p.graphed(net)
    shape = (1, 3, 32, 32)       # one signature: every thread replays the one capture
    inputs = [torch.rand(shape, generator=torch.Generator().manual_seed(i)) * 2 - 1
              for i in range(8)]
    with torch.no_grad():
        expected = [net(x) for x in inputs]
    translate(inputs[0].as_subclass(OnCuda))      # the capture
    outputs, errors = _in_threads(lambda x: translate(x.as_subclass(OnCuda)), inputs, rounds=4)
    assert errors == []
    for i, results in outputs.items():
        for result in results:
            torch.testing.assert_close(result.as_subclass(torch.Tensor), expected[i],
                                       rtol=1e-5, atol=1e-5)


def test_threads_sharing_one_train_mode_unet_draw_different_dropout_masks(one_thread):
    """QA r57: 4 threads, 80 train-mode calls on one input gave 89-94 identical output pairs
    (each forward read the dropout offset as it began and advanced it only as it ended, so
    forwards running together drew the same masks); one thread gave none. Each draw now
    reserves its range, and the offset ends where one thread's calls leave it."""
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 6, ngf=8, use_dropout=True).train()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    calls, threads = 60, 4

    def call(_):
        with torch.no_grad():
            return net(x)
    outputs, errors = _in_threads(call, [x] * threads, calls // threads)
    assert not errors
    flat = [output for outputs_of_one in outputs.values() for output in outputs_of_one]
    same = sum(torch.equal(a, b) for i, a in enumerate(flat) for b in flat[i + 1:])
    assert same == 0
    drawn_per_call = net.dropout_rng[1].item() // calls
    torch.manual_seed(0)
    alone = fastp2p.UNet(3, 3, 6, ngf=8, use_dropout=True).train()
    with torch.no_grad():
        alone(x)
    assert alone.dropout_rng[1].item() == drawn_per_call > 0
