"""Pix2PixEngine(side_streams=True) on a CPU: refused with a clear error; and the step body's
stream structure (fastp2p.train.step_streams), run with a recorder in place of the CUDA side
stream: which forward runs on which stream, where the fork and the joins are, which tensors are
handed back to the main stream, and that the result is the serial step's bit for bit (losses,
weights, gradients, BatchNorm running statistics). The GPU check is
test_engine_side_streams_cuda.py."""
import copy

import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.step_streams import real_pair_may_start_first
from helpers.stream_recorders import RecordingStreams
from helpers.train_helpers import gradients, loss_curve, random_batches, tiny_networks

STEPS = 3


def _watch(engine, netG, netD, real_B, recorder):
    """Log each forward of G and D (D's by pair: fake, real, or the frozen G-step call), each
    GAN loss (by target) and L1 loss with the stream it was issued on; returns the outputs of
    D's real-pair forwards and the hooks' handles."""
    real_outputs = []

    def log_gan_loss(module, args, output):
        recorder.log.append(f"GAN loss {'real' if args[1] else 'fake'} on {recorder.current}")

    l1_loss = engine._l1_loss

    def logged_l1_loss(*args):
        recorder.log.append(f"L1 on {recorder.current}")
        return l1_loss(*args)

    engine._l1_loss = logged_l1_loss

    def log_g(module, inputs, output):
        recorder.log.append(f"G on {recorder.current}")

    def log_d(module, inputs, output):
        if not any(p.requires_grad for p in module.parameters()):
            which = "frozen"
        elif torch.equal(inputs[0][:, 3:], real_B):
            which = "real"
            real_outputs.append(output)
        else:
            which = "fake"
        recorder.log.append(f"D {which} on {recorder.current}")

    return real_outputs, (netG.register_forward_hook(log_g), netD.register_forward_hook(log_d),
                          engine.criterionGAN.register_forward_hook(log_gan_loss))


def _state(*nets):
    return [t.detach().clone() for net in nets for t in (*net.parameters(), *net.buffers())]


def test_side_streams_are_refused_on_a_cpu():
    with pytest.raises(ValueError, match="side_streams=True needs the networks on a CUDA"):
        Pix2PixEngine(*tiny_networks(), side_streams=True)


def test_the_real_pair_may_start_first_only_when_D_keeps_no_state():
    _, batch_norm_D = tiny_networks(norm="batch")
    _, instance_norm_D = tiny_networks(norm="instance")
    assert not real_pair_may_start_first(batch_norm_D)  # running statistics
    assert real_pair_may_start_first(instance_norm_D)
    instance_norm_D.model.append(torch.nn.Dropout(0.5))
    assert not real_pair_may_start_first(instance_norm_D)  # random draws


# norm: batch -> the fork after D's fake-pair forward; instance -> at the top of the step.
@pytest.mark.parametrize("fused_step_losses", [False, True], ids=["losses", "fused-losses"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_recorded_side_stream_step_is_the_serial_step(one_thread, norm, fused_step_losses):
    batches = random_batches(STEPS, batch_size=2, size=32)
    netG, netD = tiny_networks(norm=norm)
    sideG, sideD = copy.deepcopy(netG), copy.deepcopy(netD)
    serial = Pix2PixEngine(netG, netD, fused_step_losses=fused_step_losses)
    side = Pix2PixEngine(sideG, sideD, fused_step_losses=fused_step_losses)
    recorder = side._streams = RecordingStreams()
    real_outputs, hooks = _watch(side, sideG, sideD, batches[0][1], recorder)

    expected = loss_curve(serial, batches[:1])
    got = loss_curve(side, batches[:1])

    # One step's structure. Unfused, the D_real loss runs on the side stream, and the D_fake
    # and L1 losses on the main stream before the join (the fused ops run after it). The
    # first join hands back what the side stream made for the main stream: logits_real, and
    # unfused the D_real loss too; the second follows D's backward.
    real_pair = ["D real on side"] + ([] if fused_step_losses else ["GAN loss real on side"])
    if norm == "batch":  # running statistics: the real pair after the fake pair's forward
        forwards = ["G on main", "D fake on main", "fork", *real_pair]
    else:  # D changes no state: the real pair beside G's forward
        forwards = ["fork", *real_pair, "G on main", "D fake on main"]
    main_meanwhile = [] if fused_step_losses else ["GAN loss fake on main", "L1 on main"]
    g_step = ["D frozen on main"] + ([] if fused_step_losses else ["GAN loss real on main"])
    assert recorder.log == [*forwards, *main_meanwhile, f"join {len(real_pair)}", "join 0",
                            *g_step]
    assert recorder.joined[0][0] is real_outputs[0]

    for hook in hooks:
        hook.remove()
    expected = torch.cat([expected, loss_curve(serial, batches[1:])])
    got = torch.cat([got, loss_curve(side, batches[1:])])
    assert torch.equal(got, expected)
    for ours, theirs in zip(_state(sideG, sideD), _state(netG, netD), strict=True):
        assert torch.equal(ours, theirs)  # weights and BatchNorm running statistics
    for ours, theirs in zip(gradients(sideG, sideD), gradients(netG, netD), strict=True):
        assert torch.equal(ours, theirs)
    if norm == "batch":
        assert any(name.endswith("running_mean") for name, _ in sideD.named_buffers())


def test_the_profile_reports_kernel_time_per_stream_and_the_overlap():
    """benchmarks/profile_step.py's stream_times on a made-up event list (µs): two kernels
    overlap for 3 µs, a CPU event and the gap between kernels count for nothing."""
    from types import SimpleNamespace

    from helpers.benchmark_scripts import load_benchmark_script

    def event(stream, start, end, device_type=torch.autograd.DeviceType.CUDA):
        return SimpleNamespace(device_type=device_type, device_resource_id=stream,
                               device_time=end - start,
                               time_range=SimpleNamespace(start=start, end=end))

    events = [event(7, 0, 10), event(9, 7, 12), event(7, 20, 25),
              event(0, 0, 100, torch.autograd.DeviceType.CPU)]
    per_stream, busy_ms = load_benchmark_script("profile_step").stream_times(events, steps=1)
    assert per_stream == pytest.approx({7: 0.015, 9: 0.005})
    assert busy_ms == pytest.approx(0.017)  # 20 µs of kernels, 3 of them in overlap
