"""Pix2PixEngine(optimizer_overlap=True) on a CPU (fastp2p.train.optimizer_overlap): the Adam
kernel through the Triton interpreter, and a recorder in place of the CUDA side stream that runs
each bucket's update inline, at the moment the hook issues it - the strictest schedule a GPU
could give it (an update that comes too early changes the weights or gradients the rest of the
backward reads, or reads gradients not yet final, and so changes the results). Checked: N steps
equal to the same engine without the option bit for bit; each bucket issued after its last
gradient and inside the backward, on the side stream, joined before the next read of its
weights; D's hooks fire once per D step (its weights get two contributions) and never in the G
step; an engine that updates a bucket one gradient early is caught; the refusals. The GPU
check is test_engine_optimizer_overlap_cuda.py."""
import copy
import gc
import io
import weakref

import pytest
import torch

from fastp2p.train import optimizer_overlap
from fastp2p.train.engine import Pix2PixEngine
from helpers.stream_recorders import RecordingStreams
from helpers.train_helpers import loss_curve, random_batches, tiny_networks
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]
STEPS = 3


def _overlapped_engine(monkeypatch, netG, netD, log=None, **options):
    """(engine with optimizer_overlap=True whose side stream is a RecordingStreams, the streams,
    their log: ``log`` or a new list)."""
    log = [] if log is None else log
    streams = RecordingStreams(log)
    monkeypatch.setattr(optimizer_overlap, "overlap_streams",
                        lambda device, master_weights, *nets: streams)
    engine = Pix2PixEngine(netG, netD, master_weights=True, optimizer_overlap=True, **options)
    return engine, streams, log


def _training_state(engine) -> dict:
    """Every tensor a step changes, by name: weights (the masters), buffers, moments,
    gradients, and each optimizer's step count."""
    state = {}
    for label, net, opt in (("G", engine.netG, engine.optimizer_G),
                            ("D", engine.netD, engine.optimizer_D)):
        state.update({f"{label} {k}": v.clone() for k, v in net.state_dict().items()})
        for name, param in net.named_parameters():
            state[f"{label} grad {name}"] = param.grad.clone()
            for key, value in opt.state[param].items():
                state[f"{label} {key} {name}"] = value.clone()
        state[f"{label} steps"] = torch.tensor(opt.steps)
    return state


def _differences(got: dict, expected: dict) -> list:
    assert got.keys() == expected.keys()
    return [name for name in expected if not torch.equal(got[name], expected[name])]


def _serial_run(netG, netD, batches, **options):
    engine = Pix2PixEngine(netG, netD, master_weights=True, **options)
    return loss_curve(engine, batches), _training_state(engine)


# side streams (D's real pair on a second stream, recorded inline as well) against the serial
# step without them: test_engine_side_streams.py shows the two are the same step.
@pytest.mark.parametrize("norm, fused_step_losses, side_streams", [
    ("batch", False, False), ("batch", True, False), ("instance", False, False),
    ("instance", True, False), ("batch", False, True), ("instance", True, True)],
    ids=["batch", "batch-fused-losses", "instance", "instance-fused-losses",
         "batch-side-streams", "instance-fused-losses-side-streams"])
def test_overlapped_steps_are_the_serial_steps_bit_for_bit(one_thread, monkeypatch, norm,
                                                           fused_step_losses, side_streams):
    batches = random_batches(STEPS, batch_size=2, size=64)
    netG, netD = tiny_networks(norm=norm, num_downs=6, use_dropout=True)   # 6: one Dropout
    options = dict(fused_step_losses=fused_step_losses)
    expected_curve, expected = _serial_run(copy.deepcopy(netG), copy.deepcopy(netD), batches,
                                           **options)
    engine, _, log = _overlapped_engine(monkeypatch, netG, netD, **options)
    if side_streams:
        engine._streams = RecordingStreams()
    assert len(engine.optimizer_G.bucket_params) == optimizer_overlap.BUCKETS
    assert len(engine.optimizer_D.bucket_params) > 1

    curve = loss_curve(engine, batches)

    assert torch.isfinite(curve).all()
    assert torch.equal(curve, expected_curve)
    assert _differences(_training_state(engine), expected) == []
    assert engine.optimizer_G.steps == engine.optimizer_D.steps == STEPS
    buckets = len(engine.optimizer_G.bucket_params) + len(engine.optimizer_D.bucket_params)
    assert log.count("fork") == STEPS * buckets  # every bucket issued from a hook


def test_each_bucket_is_issued_once_final_inside_the_backward_and_joined_before_a_read(
        one_thread, monkeypatch):
    """The order of one step, from a log of: each parameter's gradient accumulation (hooks
    registered before the engine's, so they log first), each bucket's update and the stream it
    was issued on, the forks and joins, the networks' forwards, the end of each backward."""
    netG, netD = tiny_networks()
    names = {id(p): f"{label} {n}" for label, net in (("G", netG), ("D", netD))
             for n, p in net.named_parameters()}
    log = []
    for net in (netG, netD):
        for param in net.parameters():
            param.register_post_accumulate_grad_hook(
                lambda p: log.append(f"grad {names[id(p)]}"))
    engine, streams, _ = _overlapped_engine(monkeypatch, netG, netD, log=log)
    snapshots = {}  # (network, bucket): its gradients when its update was issued

    def logging_updates(label, opt):
        step_bucket = opt.step_bucket

        def step_and_log(index):
            log.append(f"update {label} {index} on {streams.current}")
            snapshots[label, index] = [p.grad.clone() for p in opt.bucket_params[index]]
            step_bucket(index)
        return step_and_log

    engine.optimizer_G.step_bucket = logging_updates("G", engine.optimizer_G)
    engine.optimizer_D.step_bucket = logging_updates("D", engine.optimizer_D)
    netG.register_forward_hook(lambda *_: log.append("G forward"))
    netD.register_forward_hook(lambda module, *_: log.append(
        "D forward" if next(module.parameters()).requires_grad else "D frozen forward"))
    for label in ("D", "G"):
        backward = getattr(engine, f"_backward_{label}")

        def logged_backward(*args, backward=backward, label=label):
            result = backward(*args)
            log.append(f"{label} backward done")
            return result
        setattr(engine, f"_backward_{label}", logged_backward)

    real_A, real_B = random_batches(1)[0]
    engine.step(real_A, real_B)
    engine.step(real_A, real_B)  # the next step's reads of G's weights

    second_step_start = [i for i, entry in enumerate(log) if entry == "G forward"][1]
    first_step = log[:second_step_start]
    for label, opt in (("D", engine.optimizer_D), ("G", engine.optimizer_G)):
        done = first_step.index(f"{label} backward done")
        join = first_step.index("join 0", done)
        for index, params in enumerate(opt.bucket_params):
            update = first_step.index(f"update {label} {index} on side")
            assert first_step[update - 1] == "fork"
            arrivals = [first_step.index(f"grad {names[id(p)]}") for p in params]
            # after the bucket's last gradient, inside the backward, joined after it
            assert max(arrivals) < update < done < join
            for before, final in zip(snapshots[label, index], params):
                assert torch.equal(before, final.grad)  # it read the final gradients
        # it overlaps: the backward goes on after every bucket's update but the last one's
        last_arrival = max(i for i, entry in enumerate(first_step)
                           if entry.startswith(f"grad {label} "))
        overlapped = [index for index in range(len(opt.bucket_params))
                      if first_step.index(f"update {label} {index} on side") < last_arrival]
        assert len(overlapped) == len(opt.bucket_params) - 1 >= 2
        # each gradient once, D's in the D step only (it is frozen in the G step)
        for name in (n for n in names.values() if n.startswith(label)):
            assert first_step.count(f"grad {name}") == 1
    d_join = first_step.index("join 0", first_step.index("D backward done"))
    assert d_join < first_step.index("D frozen forward")  # D updated before the G step reads it
    g_join = first_step.index("join 0", first_step.index("G backward done"))
    assert g_join == len(first_step) - 1  # G's updates joined before the next step's G forward
    assert not any(entry.startswith("grad D") for entry in
                   first_step[first_step.index("D frozen forward"):])


def _last_two_arrivals_in_each_bucket(monkeypatch, label):
    """(bucket index, names of its parameters whose gradients arrive second-to-last and last)
    for each bucket of network ``label`` with more than one parameter, from one overlapped
    step's arrival order."""
    engine, _, _ = _overlapped_engine(monkeypatch, *tiny_networks())
    net, opt = getattr(engine, f"net{label}"), getattr(engine, f"optimizer_{label}")
    order = []
    for param in opt._params:
        param.register_post_accumulate_grad_hook(lambda p: order.append(id(p)))
    engine.step(*random_batches(1)[0])
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(order) == sorted(names)  # each gradient once
    found = []
    for index, params in enumerate(opt.bucket_params):
        if len(params) > 1:
            arrivals = sorted((id(p) for p in params), key=order.index)
            found.append((index, names[arrivals[-2]], names[arrivals[-1]]))
    return found


@pytest.mark.parametrize("label", ["G", "D"])
def test_a_bucket_updated_one_gradient_early_is_caught(one_thread, monkeypatch, label):
    """For every bucket of more than one parameter: an engine that updates it when its
    second-to-last gradient arrives, before the last one, no longer trains as the serial step
    does, which the equality of the test above reports. For G's bucket of the last layers the
    last parameter is a transposed convolution's weight, whose own data gradient is still to be
    computed: the early update changes what the rest of the backward reads, so even the other
    buckets' gradients differ (from the second step on: in the first, Adam's moments are zero,
    so an update over a zero gradient moves nothing)."""
    batches = random_batches(2)
    _, expected = _serial_run(*tiny_networks(), batches)
    cases = _last_two_arrivals_in_each_bucket(monkeypatch, label)
    assert cases
    for index, early, last in cases:
        engine, _, _ = _overlapped_engine(monkeypatch, *tiny_networks())
        net, opt = getattr(engine, f"net{label}"), getattr(engine, f"optimizer_{label}")
        step_bucket = opt.step_bucket
        dict(net.named_parameters())[early].register_post_accumulate_grad_hook(
            lambda p, index=index, step_bucket=step_bucket: step_bucket(index))
        opt.step_bucket = (lambda i, index=index, step_bucket=step_bucket:
                           None if i == index else step_bucket(i))  # the on-time one goes
        loss_curve(engine, batches)
        different = _differences(_training_state(engine), expected)
        assert different, f"bucket {index} updated before {last} arrived went unnoticed"
        if label == "G" and index == 0:
            last_layer = engine.netG.get_submodule(last.rsplit(".", 1)[0])
            assert isinstance(last_layer, torch.nn.ConvTranspose2d) and last.endswith("weight")
            other_buckets = {f"G grad {n}" for n, p in engine.netG.named_parameters()
                             if not any(p is q for q in opt.bucket_params[0])}
            assert other_buckets & set(different), "the backward read no early update"


def test_a_second_backward_in_one_network_step_raises(one_thread, monkeypatch):
    netG, netD = tiny_networks()
    engine, _, _ = _overlapped_engine(monkeypatch, netG, netD)
    updates = engine._updates["D"]
    updates.zero_grad()
    pair = torch.rand(1, 6, 32, 32) * 2 - 1
    netD(pair).mean().backward()
    with pytest.raises(RuntimeError, match="accumulated twice in one network step"):
        netD(pair).mean().backward()


def test_hooks_outside_a_network_step_update_nothing(one_thread, monkeypatch):
    netG, netD = tiny_networks()
    engine, _, log = _overlapped_engine(monkeypatch, netG, netD)
    before = engine.optimizer_D.master.clone()
    netD(torch.rand(1, 6, 32, 32)).mean().backward()
    assert log == [] and torch.equal(engine.optimizer_D.master, before)


def test_a_dropped_engine_leaves_no_hook_and_its_optimizer_goes(one_thread, monkeypatch):
    netG, netD = tiny_networks()
    engine, _, _ = _overlapped_engine(monkeypatch, netG, netD)
    optimizer = weakref.ref(engine.optimizer_G)
    param = next(netG.parameters())
    assert len(param._post_accumulate_grad_hooks) == 1
    del engine
    gc.collect()
    assert optimizer() is None and not param._post_accumulate_grad_hooks
    _overlapped_engine(monkeypatch, netG, netD)  # a new engine on the same networks: one hook
    gc.collect()
    assert len(param._post_accumulate_grad_hooks) <= 1


def test_a_step_that_raises_in_the_backward_joins_what_it_launched(one_thread, monkeypatch):
    """A failure inside G's backward, after some of G's buckets were launched: the error leaves
    the step with every launch joined and no bucket waiting, so the next step runs normally."""
    netG, netD = tiny_networks()
    engine, _, log = _overlapped_engine(monkeypatch, netG, netD)
    engine.step(*random_batches(1)[0])
    first_conv = netG.model.model[0]

    def fail(grad):
        raise RuntimeError("injected backward failure")

    # A gradient hook on the weight, not a module backward hook: that one would send the U-Net
    # to its reference forward, where torch refuses it (an in-place activation follows the conv).
    handle = first_conv.weight.register_hook(fail)
    log.clear()
    with pytest.raises(RuntimeError, match="injected backward failure"):
        engine.step(*random_batches(1, seed=2)[0])
    handle.remove()
    assert log.count("fork") > 0 and log[-1] == "join 0"
    assert all(u._waiting is None for u in engine._updates.values())
    engine.step(*random_batches(1, seed=3)[0])  # no "accumulated twice", no waiting bucket
    assert all(u._waiting is None for u in engine._updates.values())


def test_the_hooks_keep_no_accumulate_grad_node_alive(one_thread, monkeypatch):
    """Each forward makes new AccumulateGrad nodes, which take its stream: a node kept alive
    from an eager warm-up step would accumulate on the warm-up stream, outside the capture."""
    netG, netD = tiny_networks()
    engine, _, _ = _overlapped_engine(monkeypatch, netG, netD)
    engine.step(*random_batches(1)[0])
    weight = next(netG.parameters())  # D is left frozen by the G step

    def accumulate_grad_node():
        return (weight * 1).grad_fn.next_functions[0][0]

    accumulate_grad_node().metadata["from"] = "an earlier forward"
    assert "from" not in accumulate_grad_node().metadata


def test_a_checkpoint_resumes_across_the_option(one_thread, monkeypatch):
    """The optimizer state_dict lists the moments in the unbucketed order: an engine state saved
    without the option resumes with it (and back), exactly as the uninterrupted run goes on."""
    batches = random_batches(4)
    uninterrupted = Pix2PixEngine(*tiny_networks(), master_weights=True)
    loss_curve(uninterrupted, batches[:2])
    buffer = io.BytesIO()
    torch.save({"G": uninterrupted.netG.state_dict(), "D": uninterrupted.netD.state_dict(),
                "engine": uninterrupted.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, _, _ = _overlapped_engine(monkeypatch, *tiny_networks(seed=7))
    resumed.netG.load_state_dict(saved["G"])
    resumed.netD.load_state_dict(saved["D"])
    resumed.load_state_dict(saved["engine"])
    assert torch.equal(loss_curve(resumed, batches[2:]), loss_curve(uninterrupted, batches[2:]))
    assert _differences(_training_state(resumed), _training_state(uninterrupted)) == []
    back = Pix2PixEngine(*tiny_networks(seed=7), master_weights=True)
    back.optimizer_G.load_state_dict(resumed.optimizer_G.state_dict())
    assert torch.equal(back.optimizer_G.exp_avg, uninterrupted.optimizer_G.exp_avg)


def test_refusals_name_the_option_and_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match=r"optimizer_overlap=True needs master_weights=True"):
        Pix2PixEngine(*tiny_networks(), optimizer_overlap=True)
    with pytest.raises(ValueError, match=r"optimizer_overlap=True needs the networks on a CUDA "
                                         r"device, they are on cpu; use optimizer_overlap=False"):
        Pix2PixEngine(*tiny_networks(), master_weights=True, optimizer_overlap=True)
    monkeypatch.delenv("TRITON_INTERPRET")  # refused before master_weights' own device check
    with pytest.raises(ValueError, match=r"optimizer_overlap=True needs the networks on a CUDA"):
        Pix2PixEngine(*tiny_networks(), master_weights=True, optimizer_overlap=True)


def test_refused_with_distributed_data_parallel():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        netG, netD = tiny_networks()
        wrapped = DistributedDataParallel(netD)
        with pytest.raises(ValueError, match="optimizer_overlap=True is not supported with "
                                             "DistributedDataParallel"):
            Pix2PixEngine(netG, wrapped, master_weights=True, optimizer_overlap=True)
        wrapped = None  # its reducer goes before the group (fastp2p.train.distributed)
        gc.collect()
    finally:
        dist.destroy_process_group()
