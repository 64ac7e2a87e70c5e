"""Threads whose first calls on one network come at once (a server's first requests; QA server
#2): each measured the transposed convolutions' forms itself and ran the form it measured, so
the same input gave outputs differing in rounding (~1e-8) within one process. The first thread
now measures each choice key and the others take its choice (fastp2p.ops.conv_transpose)."""
import collections
import threading

import pytest
import torch

import fastp2p
from fastp2p.ops import conv_transpose

THREADS = 4


@pytest.fixture
def measuring(monkeypatch):
    """A stand-in for the measurement, {choice key: times measured}: each measurement waits
    until every thread has asked for its key (each that found no choice then measured too) and
    picks the next form, so that threads measuring on their own run different forms."""
    measured, asked = collections.Counter(), collections.defaultdict(set)
    news = threading.Condition()
    choice_key = conv_transpose._choice_key

    def asking(module, x, forms):
        key = choice_key(module, x, forms)
        with news:
            asked[key].add(threading.get_ident())
            news.notify_all()
        return key

    def measurement(module, x, forms):
        key = choice_key(module, x, forms)
        with news:
            news.wait_for(lambda: len(asked[key]) == THREADS, timeout=30)
            measured[key] += 1
            return forms[(measured[key] - 1) % len(forms)]

    monkeypatch.setattr(conv_transpose, "_choice_key", asking)
    monkeypatch.setattr(conv_transpose, "_faster_form", measurement)
    monkeypatch.setattr(conv_transpose, "_measured_forms", {})
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, conv_transpose.MEASURE_ONLY)
    return measured


def test_first_calls_at_once_measure_each_form_once_and_give_one_output(measuring, one_thread):
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, ngf=8).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    start, outputs = threading.Barrier(THREADS), [None] * THREADS

    def first_call(i):
        start.wait()
        with torch.inference_mode():
            outputs[i] = net(x)
    threads = [threading.Thread(target=first_call, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert measuring, "no transposed convolution had two forms to choose from"
    assert set(measuring.values()) == {1}
    assert all(torch.equal(output, outputs[0]) for output in outputs)
