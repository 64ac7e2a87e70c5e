"""A process forked while another of its threads held one of fastp2p's locks (QA server #1: a
serving process whose reload thread rebuilt a layer's cached weights under that layer's lock,
forking a worker): the child got the lock held for good, and its first forward hung. Each forked
child now gets every such lock free (fastp2p.fork_safe), and builds anew what the parent's thread
was building (it is stored only once whole). The network tests run torch at one thread: at more,
a child forked after torch ran a parallel op hangs in torch's first parallel op there (OpenMP's
limit, without fastp2p too)."""
import copy
import gc
import multiprocessing
import os
import threading
import weakref
from contextlib import ExitStack, contextmanager

import pytest
import torch

import fastp2p
from fastp2p import fork_safe
from fastp2p.fork_safe import ForkSafeLock
from fastp2p.nn import folding, fused
from helpers.network_checks import eval_unet_with_statistics

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# Seconds a child gets for a forward of a tiny network: it took well under one; a hung child
# is killed at the end of them.
CHILD_SECONDS = 30


def _input():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _runs_in_a_forked_child(work) -> None:
    """A forked child runs ``work()`` to its end (a child still running after CHILD_SECONDS
    hung: it is killed)."""
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(CHILD_SECONDS)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "the forked child hung"
    assert child.exitcode == 0, f"the forked child failed: exit code {child.exitcode}"


@contextmanager
def _held_in_a_thread(lock):
    """``lock`` held by another thread for the block."""
    held, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            done.wait()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        yield
    finally:
        done.set()
        holder.join()


def _eval_forward_matches(net, x, expected):
    def work():
        with torch.no_grad():
            torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
    return work


def test_a_child_forked_while_a_thread_builds_a_cached_fold_runs_the_network(
        monkeypatch, one_thread):
    """The parent's thread stops inside the first fold it builds (under that layer's lock, the
    entry not stored yet); the child forked then builds the fold itself."""
    net, x = eval_unet_with_statistics(), _input()
    with torch.no_grad():
        expected = copy.deepcopy(net)(x)    # caches of its own; the forms measured here
    parent, building, go_on = os.getpid(), threading.Event(), threading.Event()
    fold = folding.fold_batchnorm

    def stopping_fold(conv, norm):
        if os.getpid() == parent:           # the child's own builds go through
            building.set()
            go_on.wait()
        return fold(conv, norm)
    monkeypatch.setattr(folding, "fold_batchnorm", stopping_fold)

    def forward():
        with torch.no_grad():
            net(x)
    builder = threading.Thread(target=forward)
    builder.start()
    building.wait()
    try:
        _runs_in_a_forked_child(_eval_forward_matches(net, x, expected))
    finally:
        go_on.set()
        builder.join()


@pytest.mark.parametrize("lock_of", [lambda: fused.DropoutRNG._reserving,
                                     lambda: fused._counting],
                         ids=["dropout-offsets", "unet-count"])
def test_a_child_forked_while_a_thread_holds_a_unet_lock_trains_and_builds(lock_of, one_thread):
    """The locks a train-mode forward (its dropout draws) and a U-Net's construction (its
    default dropout seed) take."""
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 6, ngf=4, use_dropout=True)    # 6 levels: one with dropout
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def work():
        fastp2p.UNet(3, 3, 5, ngf=4)
        assert torch.isfinite(net(x)).all()
    with _held_in_a_thread(lock_of()):
        _runs_in_a_forked_child(work)


def test_a_loader_worker_forked_while_a_reader_thread_opens_a_shard_reads():
    """A packed dataset's open shards, which a forked DataLoader worker inherits and reads
    through (fastp2p.data.packed)."""
    from fastp2p.data.packed import _OpenShards

    shards = _OpenShards()
    with _held_in_a_thread(shards._guard):
        _runs_in_a_forked_child(lambda: shards.get(("shard", 0)))


def test_a_reentrant_lock_is_taken_again_by_its_holder_here_and_in_a_forked_child():
    """``reentrant``: an RLock, in the parent and as renewed in each forked child (a layer's
    folding lock and a capture wrapper's are taken again by the thread holding them): a plain
    Lock there hangs that thread for good."""
    lock = ForkSafeLock(reentrant=True)

    def take_it_twice():
        with lock:
            with lock:
                pass
    taker = threading.Thread(target=take_it_twice, daemon=True)   # a hung one ends with us
    taker.start()
    taker.join(CHILD_SECONDS)
    assert not taker.is_alive(), "the lock's holder hung taking it again"
    _runs_in_a_forked_child(take_it_twice)


def test_a_lock_goes_with_what_it_guards():
    """The locks every forked child renews are held weakly: a server that builds network after
    network kept each one's locks (and renewed them all in every child) for good."""
    lock = ForkSafeLock()
    gone = weakref.ref(lock)
    del lock
    gc.collect()
    assert gone() is None


def test_a_child_forked_while_threads_hold_every_lock_takes_each():
    """Each forked child renews every ForkSafeLock there is, not only those the tests above
    hold: a lock left out stays held for good in the child."""
    made = [ForkSafeLock(), ForkSafeLock(reentrant=True)]   # at least these, of each kind
    locks = list(fork_safe._every_lock)
    assert set(made) <= set(locks)

    def take_each():
        for lock in locks:
            with lock:
                pass
    with ExitStack() as holders:
        for lock in locks:
            holders.enter_context(_held_in_a_thread(lock))
        _runs_in_a_forked_child(take_each)
