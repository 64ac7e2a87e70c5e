"""Options refused because of this machine or the crop, before anything runs, in one line naming
the option: --num_threads past the usable cores (1000 started 1000 loader workers), `bench
--processes` past the cores or GPUs (1000 started 1000 training processes), a --ngf / --ndf whose
parameters alone exceed the memory (torch's allocation traceback, or the out-of-memory killer),
and a --n_layers_D that leaves no logit map of the crops (a traceback-free error, but only at
the first step, after the run folder was written)."""
from types import SimpleNamespace

import pytest
import torch

import fastp2p
from fastp2p.cli import build_parser, main
from fastp2p.patchgan_sizes import most_patch_layers, patch_logits_size
from fastp2p.train import networks
from helpers.bench_helpers import quick_settings
from helpers.train_helpers import tiny_test_argv, train_argv

HUGE_NGF = 2 ** 20  # the U-Net's widest weight alone: 2**53 bytes, on no machine


def _cores(monkeypatch, count):
    monkeypatch.setattr("fastp2p.cpu_info.usable_cpus", lambda: count)


def _last_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


@pytest.mark.parametrize("cores,most", [(1, 4), (2, 4), (8, 8)])
@pytest.mark.parametrize("command", ["train", "test"])
def test_num_threads_past_the_cores_is_refused_while_parsing(monkeypatch, capsys, command,
                                                             cores, most):
    """One worker per usable core, or the reference's default 4 on fewer cores."""
    _cores(monkeypatch, cores)
    args, _ = build_parser().parse_known_args([command, "--num_threads", str(most)])
    assert args.num_threads == most
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_known_args([command, "--num_threads", "1000"])
    assert stop.value.code == 2
    line = _last_error_line(capsys)
    assert (f"argument --num_threads: must be <= {most}, got 1000: this process may run on "
            f"{cores} core(s)") in line, line


@pytest.mark.parametrize("processes,refused", [(2, False), (3, True), (1000, True)])
def test_bench_processes_past_the_cores_are_refused_before_any_job(monkeypatch, processes,
                                                                   refused):
    _cores(monkeypatch, 2)
    argv = ("--sections", "end-to-end", "--processes", f"1,{processes}")
    if not refused:
        assert quick_settings(*argv).processes == (1, processes)
        return
    with pytest.raises(ValueError, match=f"--processes {processes} on the cpu needs a core per "
                                         "process.* 2 core"):
        quick_settings(*argv)


def test_bench_processes_are_not_checked_for_a_run_without_end_to_end(monkeypatch):
    _cores(monkeypatch, 1)
    assert quick_settings("--sections", "training", "--processes", "2").processes == (2,)


def test_a_huge_ngf_is_refused_before_anything_is_written(data, tmp_path, capsys, monkeypatch):
    """The reported command: torch's allocation traceback, exit 1."""
    # no cgroup limit: in a container whose limit is lower, the line names that limit instead
    monkeypatch.setattr(networks, "cgroup_memory_limit_files", lambda: [])
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--ngf", str(HUGE_NGF))) == 2
    line = _last_error_line(capsys)
    assert line.startswith(f"fastp2p train: error: --ngf {HUGE_NGF} --ndf 4: the networks' ")
    assert ("parameters need at least" in line and "PiB for their float32 weights, gradients "
            "and Adam moments alone, more than this machine's physical memory" in line
            and line.endswith("; lower --ngf")), line
    assert not checkpoints.exists()


def test_a_huge_ndf_names_ndf(data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "ckpt", "--ndf", str(HUGE_NGF))) == 2
    assert _last_error_line(capsys).endswith("; lower --ndf")


def test_test_refuses_a_huge_ngf_for_the_generator_alone(tmp_path, capsys):
    """With no checkpoint: no file could make such a generator fit, so the option is refused
    (exit 2) before the checkpoint is looked for (c442852 said the missing file, exit 1)."""
    assert main(tiny_test_argv(tmp_path, tmp_path / "ckpt", tmp_path / "results", "--ngf",
                               str(HUGE_NGF))) == 2
    line = _last_error_line(capsys)
    assert (f"error: --ngf {HUGE_NGF}: the generator's " in line
            and "for their float32 weights alone" in line), line
    assert not (tmp_path / "results").exists()


def test_a_failed_allocation_building_the_networks_is_one_line(data, tmp_path, capsys,
                                                               monkeypatch):
    """Past the estimate (a lower bound; here the memory is unknown), torch's own allocation
    failure while the networks are built is said in one line naming the option."""
    monkeypatch.setattr(networks, "memory_of", lambda device: None, raising=False)
    assert main(train_argv(data, tmp_path / "ckpt", "--ngf", str(HUGE_NGF))) == 1
    line = _last_error_line(capsys)
    assert line.startswith(f"fastp2p train: error: --ngf {HUGE_NGF}: the generator does not fit "
                           "in the memory of cpu (") and line.endswith("; lower --ngf"), line


def _options(**changes):
    options = dict(netG="unet_32", ngf=4, ndf=4, netD="basic", n_layers_D=3, input_nc=3,
                   output_nc=3, norm="batch", no_dropout=False)
    return SimpleNamespace(**{**options, **changes})


def _parameters(args):
    counts = networks.network_parameters(args, discriminator=True)
    generator = sum(p.numel() for p in fastp2p.UNet(3, 3, 5, ngf=4).parameters())
    discriminator = sum(p.numel() for p in fastp2p.PatchDiscriminator(6, ndf=4).parameters())
    assert counts == {"--ngf": generator, "--ndf": discriminator}
    return generator + discriminator


def test_the_estimate_counts_16_bytes_a_parameter_in_training_times_local_processes(
        monkeypatch):
    args = _options()
    need = 16 * _parameters(args)
    monkeypatch.setattr(networks, "memory_of", lambda device: (need, "the test's memory"))
    networks.check_networks_fit_memory(args, torch.device("cpu"), training=True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")   # two CPU processes of a torchrun job
    with pytest.raises(ValueError, match="times 2 processes of this torchrun job, more than "
                                         "the test's memory"):
        networks.check_networks_fit_memory(args, torch.device("cpu"), training=True)


def test_on_cuda_the_gpu_holds_the_training_state_and_the_host_the_larger_network(monkeypatch):
    args = _options()
    parameters = _parameters(args)
    gpu = SimpleNamespace(total_memory=16 * parameters - 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: gpu)
    cuda = torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"Adam moments alone, more than cuda:0's total memory"):
        networks.check_networks_fit_memory(args, cuda, training=True)
    gpu.total_memory += 1
    networks.check_networks_fit_memory(args, cuda, training=True)
    real_memory_of = networks.memory_of
    monkeypatch.setattr(networks, "memory_of", lambda device: (
        (4 * max(networks.network_parameters(args, discriminator=True).values()) - 1, "host")
        if device.type == "cpu" else real_memory_of(device)))
    with pytest.raises(ValueError, match="larger network's .* before they move to the GPU, "
                                         "more than host"):
        networks.check_networks_fit_memory(args, cuda, training=True)


@pytest.mark.parametrize("side", [3, 32, 64, 96, 256, 32768])
def test_most_patch_layers_is_the_last_that_keeps_a_logit_map(side):
    most = most_patch_layers(side)
    assert patch_logits_size(side, most) >= 1 > patch_logits_size(side, most + 1)


@pytest.mark.parametrize("side", [32, 64])
def test_the_patchgan_runs_with_most_layers_and_not_one_more(side):
    most = most_patch_layers(side)
    image = torch.zeros(1, 6, side, side)
    fastp2p.PatchDiscriminator(6, ndf=1, n_layers=most)(image)
    with pytest.raises(ValueError, match="too small"):
        fastp2p.PatchDiscriminator(6, ndf=1, n_layers=most + 1)(image)


@pytest.mark.parametrize("preprocess,option", [("resize_and_crop", "--crop_size"),
                                               ("scale_width", "--load_size")])
def test_too_many_patch_layers_for_the_images_are_refused_before_anything_is_written(
        data, tmp_path, capsys, preprocess, option):
    """The reported command: a one-line error at the first step, exit 1, after "training ..."
    and with the run folder (train_opt.txt, loss_log.csv) written."""
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--netD", "n_layers", "--n_layers_D", "4",
                           "--preprocess", preprocess)) == 2
    line = _last_error_line(capsys)
    assert line.startswith("fastp2p train: error: --netD n_layers --n_layers_D 4 leaves no "
                           f"logit map of 32-pixel sides (--preprocess {preprocess} {option} "
                           "32; ") and line.endswith(
        f": {option} 32 takes at most --n_layers_D 3; lower --n_layers_D or raise {option}"), line
    assert not checkpoints.exists()


def test_the_most_patch_layers_for_the_crop_train(data, tmp_path):
    assert main(train_argv(data, tmp_path / "ckpt", "--netD", "n_layers", "--n_layers_D", "3",
                           "--n_epochs_decay", "0", "--no_html")) == 0


def test_too_many_patch_layers_for_images_kept_at_their_size_are_refused_before_writing(
        data, tmp_path, capsys):
    """--preprocess none keeps the images' sizes, which no option names: the split's first
    image decides, before the run folder is written (it failed at the first step)."""
    checkpoints = tmp_path / "ckpt"
    assert main(train_argv(data, checkpoints, "--netD", "n_layers", "--n_layers_D", "4",
                           "--preprocess", "none")) == 1
    line = _last_error_line(capsys)
    assert line.startswith("fastp2p train: error: --netD n_layers --n_layers_D 4 leaves no "
                           "logit map of 32-pixel sides (--preprocess none makes "), line
    assert "32x32" in line, line
    assert line.endswith(": 32-pixel sides take at most --n_layers_D 3; lower --n_layers_D or "
                         "use larger images"), line
    assert not checkpoints.exists()
    assert main(train_argv(data, tmp_path / "fits", "--netD", "n_layers", "--n_layers_D", "3",
                           "--preprocess", "none", "--n_epochs_decay", "0", "--no_html")) == 0


def test_under_torchrun_each_rank_checks_its_own_gpu(data, tmp_path, monkeypatch):
    """The memory check ran before the process group, on resolve_device's default rank: every
    torchrun rank checked cuda:0, whatever GPU it trains on."""
    from fastp2p.train import train_command

    checked = []

    def stop_at_the_check(args, device):
        checked.append(device)
        raise ValueError("stopped here")
    monkeypatch.setattr(train_command, "_check_device_options", stop_at_the_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert main(train_argv(data, tmp_path / "ckpt", "--device", "cuda")) == 2
    assert checked == [torch.device("cuda", 3)]
