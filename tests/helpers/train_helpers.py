"""Tiny pix2pix networks and batches shared by the training tests (CPU-cheap: ngf 4, 32x32)."""
import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fastp2p


def tiny_networks(seed=0, norm="batch", num_downs=5, ngf=4, ndf=4, use_dropout=False):
    """A fastp2p U-Net and PatchGAN initialised like the reference (normal, gain 0.02), the
    U-Net's dropout stream at (seed, 0) as ``fastp2p train`` puts it (a U-Net built later in a
    process takes another default seed)."""
    torch.manual_seed(seed)
    netG = fastp2p.init_weights(fastp2p.UNet(3, 3, num_downs, ngf=ngf, norm=norm,
                                             use_dropout=use_dropout))
    netG.set_dropout_rng(seed)
    netD = fastp2p.init_weights(fastp2p.PatchDiscriminator(6, ndf=ndf, n_layers=2, norm=norm))
    return netG, netD


def random_batches(count, batch_size=2, size=32, seed=1):
    """``count`` (A, B) pairs of random images in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return [tuple(torch.rand(batch_size, 3, size, size, generator=generator) * 2 - 1
                  for _ in range(2)) for _ in range(count)]


def reference_step(netG, netD, opt_G, opt_D, criterion, real_A, real_B, lambda_L1=100.0):
    """pix2pix_model.optimize_parameters of the reference implementation, written out."""
    fake_B = netG(real_A)
    for p in netD.parameters():
        p.requires_grad = True
    opt_D.zero_grad()
    loss_D_fake = criterion(netD(torch.cat((real_A, fake_B), 1).detach()), False)
    loss_D_real = criterion(netD(torch.cat((real_A, real_B), 1)), True)
    ((loss_D_fake + loss_D_real) * 0.5).backward()
    opt_D.step()
    for p in netD.parameters():
        p.requires_grad = False
    opt_G.zero_grad()
    loss_G_GAN = criterion(netD(torch.cat((real_A, fake_B), 1)), True)
    loss_G_L1 = F.l1_loss(fake_B, real_B) * lambda_L1
    (loss_G_GAN + loss_G_L1).backward()
    opt_G.step()
    return [loss_G_GAN.item(), loss_G_L1.item(), loss_D_real.item(), loss_D_fake.item()]


def loss_curve(engine, batches):
    """One engine step per (A, B) batch; the losses read after each (a host sync between
    steps, never inside one), as a (steps, 4) float64 tensor in LOSS_NAMES order."""
    from fastp2p.train.engine import LOSS_NAMES
    curve = []
    for real_A, real_B in batches:
        engine.step(real_A, real_B)
        losses = engine.read_losses()
        curve.append([losses[name] for name in LOSS_NAMES])
    return torch.tensor(curve, dtype=torch.float64)


def parameters_and_buffers(*nets):
    return [t.detach().clone() for net in nets for t in
            list(net.parameters()) + list(net.buffers())]


def gradients(*nets):
    """Per network, all its parameters' .grad as one vector: after an engine step, G's from its
    step and D's from the D step (D is frozen in the G step). Comparing them catches a gradient
    off by a constant factor, which Adam's scale-free update hides from the weights; one vector
    per network, because a conv bias before an InstanceNorm has a gradient of rounding noise."""
    return [torch.cat([p.grad.flatten() for p in net.parameters()]) for net in nets]


def write_aligned_dataset(root, pairs=4, size=32, phases=("train", "test"), seed=3):
    """An aligned dataset (A|B side by side, size x 2*size PNGs) of random-ish smooth images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for phase in phases:
        folder = root / phase
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(pairs):
            coarse = rng.integers(0, 256, (size // 4, size // 2, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((2 * size, size), Image.BILINEAR)
            image.save(folder / f"{index:03d}.png")
    return root


def parsed_options(command, *argv):
    """The options `fastp2p COMMAND ARGV...` runs with (quick defaults resolved); every
    argument known."""
    from fastp2p.cli import build_parser
    from fastp2p.train.options import resolve_quick_defaults
    args, unknown = build_parser().parse_known_args([command, *argv])
    assert unknown == []
    return resolve_quick_defaults(args)


def applied_options(command, *argv):
    """(``parsed_options(command, *argv)`` after the reference options' checks and
    ``apply_reference_options``, as the commands apply them, the line that names the reference
    options it ignored or None)."""
    from fastp2p.train.reference_options import (apply_reference_options,
                                                 refuse_unsupported_values, resolve_test_model)
    args = parsed_options(command, *argv)
    refuse_unsupported_values(args, command)
    if command == "test":
        resolve_test_model(args)
    return args, apply_reference_options(args, command)


def train_argv(dataroot, checkpoints, *extra, size=32):
    """A `fastp2p train` command line for a tiny, CPU-cheap run (4 pairs, batch 1)."""
    return ["train", "--dataroot", str(dataroot), "--checkpoints_dir", str(checkpoints),
            "--name", "tiny", "--netG", f"unet_{size}", "--ngf", "4", "--ndf", "4",
            "--load_size", str(size), "--crop_size", str(size), "--num_threads", "0",
            "--n_epochs", "1", "--n_epochs_decay", "1", "--log-every", "1",
            "--display_freq", "3", "--save_latest_freq", "1000", *extra]


def logged_steps(folder) -> list:
    """The steps a run's loss_log.csv in ``folder`` has logged so far ([] before it exists)."""
    try:
        with open(Path(folder) / "loss_log.csv", newline="") as handle:
            return [int(row["step"]) for row in csv.DictReader(handle) if row.get("step")]
    except FileNotFoundError:
        return []


def tiny_test_argv(dataroot, checkpoints, results, *extra):
    """A `fastp2p test` command line for the run train_argv trains ("tiny", unet_32, ngf 4)."""
    return ["test", "--dataroot", str(dataroot), "--checkpoints_dir", str(checkpoints),
            "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
            "--crop_size", "32", "--num_threads", "0", "--results_dir", str(results), *extra]


def train_tiny_run(dataroot, checkpoints):
    """``checkpoints`` after train_argv's run "tiny" trained 1 epoch into it (no HTML pages)."""
    from fastp2p.cli import main
    assert main(train_argv(dataroot, checkpoints, "--n_epochs_decay", "0", "--no_html")) == 0
    return checkpoints


TEST_PAIRS = 3   # the test pairs of ``trained``


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(DATAROOT with TEST_PAIRS test pairs, a checkpoints folder with the 1-epoch run
    "tiny")."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=TEST_PAIRS)
    return data, train_tiny_run(data, tmp_path_factory.mktemp("trained"))


def tiny_test_results(results) -> Path:
    """Where tiny_test_argv's `fastp2p test` run writes into the results folder ``results``."""
    return results / "tiny" / "test_latest"


def one_line(text: str) -> str:
    """The only line of a message (stripped); fails if there are more."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def folder_files(folder, mtimes=False) -> dict:
    """Every file under ``folder``, as {path relative to it: bytes}; with ``mtimes``, {path:
    (bytes, modification time in ns)}, so that a file rewritten with the same bytes shows."""
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            if mtimes else path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def replace_in_set(folder, label, name, data: bytes):
    """Overwrite the file ``name`` of ``label``'s checkpoint set in the run folder ``folder`` with
    ``data`` and record its size and SHA-256 in the set's manifest, as a hand, an older fastp2p
    or an attacker who can write the folder would (the checksums are no defence against them)."""
    import hashlib
    import json

    (folder / name).write_bytes(data)
    manifest_path = folder / f"{label}_checkpoint.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest))


def write_train_state_with_manifest(folder, state, label="latest"):
    """``state`` as ``label``'s training state in the run folder ``folder``, its manifest's size
    and SHA-256 made to match (a state as an older fastp2p, or a hand, wrote it)."""
    path = folder / f"{label}_train_state.pth"
    torch.save(state, path)   # named as fastp2p names it (a zip's records are named after it)
    replace_in_set(folder, label, path.name, path.read_bytes())


def signal_after_step(monkeypatch, step, signal_number=None):
    """Deliver ``signal_number`` (SIGINT by default) to this process right after engine step
    ``step`` of every engine (the trainer then saves and exits with 128 + the signal)."""
    import os
    import signal

    from fastp2p.train.engine import Pix2PixEngine
    signal_number = signal.SIGINT if signal_number is None else signal_number
    original = Pix2PixEngine.step

    def step_then_signal(self, real_A, real_B):
        original(self, real_A, real_B)
        if self.steps == step:
            os.kill(os.getpid(), signal_number)
    monkeypatch.setattr(Pix2PixEngine, "step", step_then_signal)
