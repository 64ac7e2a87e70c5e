"""`fastp2p train` on a pack refuses, before the packed loader allocates a buffer, a pair size
and --batch_size whose read-ahead batches cannot fit this machine's memory: the pack's index
alone chooses the pair size (load_size up to 32768, 6 GiB a pair), and such a pack was killed
for memory without a word."""
import torch

from fastp2p.cli import main
from fastp2p.data import packed_loader
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from fastp2p.train import loader_memory, networks
from helpers.data_helpers import synthetic_pack

CPU = torch.device("cpu")


def _pack(tmp_path):
    """A pack of 4 pairs at load size 32 (unet_32's smallest crop)."""
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "4", str(data), str(out), "--load_size", "32",
                 "--pairs-per-shard", "2", "--no-progress"]) == 0
    return out


def _train(tmp_path, out, *extra):
    return main(["train", "--dataroot", str(out), "--checkpoints_dir", str(tmp_path / "ck"),
                 "--name", "mem", "--netG", "unet_32", "--ngf", "4", "--ndf", "4",
                 "--crop_size", "32", "--batch_size", "2", "--num_threads", "0",
                 "--n_epochs", "1", "--n_epochs_decay", "0", "--no_html", *extra])


def _memory(limit):
    real = networks.memory_of
    return lambda device, cgroup_files=None: ((limit, "the memory limit of this process's cgroup")
                                              if device.type == "cpu" else real(device))


def test_a_pack_too_large_for_memory_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    out = _pack(tmp_path)
    # 64 KiB: less than the loader's batches; the networks' own check (which this figure
    # would refuse first) is tested in test_cgroup_memory_limit and elsewhere
    monkeypatch.setattr(networks, "memory_of", _memory(64 << 10))
    monkeypatch.setattr(networks, "check_networks_fit_memory", lambda *a, **k: None)
    monkeypatch.setattr(packed_loader, "PackedDeviceLoader",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    assert _train(tmp_path, out) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("fastp2p train: error: ")
    assert "packed at load_size 32" in err and "--batch_size 2" in err
    assert "lower --batch_size, or repack at a smaller --load_size" in err
    assert "more than the memory limit of this process's cgroup (64.0 KiB)" in err


def test_a_pack_that_fits_trains(tmp_path, monkeypatch, capsys):
    out = _pack(tmp_path)
    assert _train(tmp_path, out) == 0, capsys.readouterr().err


def test_the_estimate_counts_the_buffers_and_the_reader_augmented_batches(tmp_path):
    _, out = synthetic_pack(tmp_path, 4)
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    pairs = 4 * 2 * 20 * 40 * 3                     # buffers x batch x pair bytes
    crops = 2 * 2 * 16 * 16 * 3 * 4                 # A and B, float32, per batch
    augments = packed_loader.augments_in_reader(CPU)
    assert packed_loader.loader_host_bytes(dataset.shape, 2, 16, buffers=4, device=CPU) == (
        pairs + (5 if augments else 1) * crops)
    assert packed_loader.loader_host_bytes(dataset.shape, 2, 16, buffers=4,
                                           device=torch.device("cuda")) == pairs


def test_the_default_pack_at_batch_64_fits_a_small_machine():
    # the default pack: load_size 286, 286 x 572 x 3 pairs; crop 256; 8 readers + 2 buffers
    need = packed_loader.loader_host_bytes((286, 572, 3), 64, 256, buffers=10, device=CPU)
    assert need < 2 << 30, need


def test_a_torchrun_jobs_processes_on_this_machine_are_counted(tmp_path, monkeypatch):
    _, out = synthetic_pack(tmp_path, 4)
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    one = packed_loader.loader_host_bytes(dataset.shape, 2, 16, buffers=3, device=CPU)
    monkeypatch.setattr(networks, "memory_of", _memory(2 * one))
    loader_memory.check_loader_fits_memory(dataset, 2, device=CPU, readers=1, processes=2)
    try:
        loader_memory.check_loader_fits_memory(dataset, 2, device=CPU, readers=1, processes=3)
    except ValueError as err:
        assert "times 3 processes of this torchrun job" in str(err)
    else:
        raise AssertionError("not refused")
