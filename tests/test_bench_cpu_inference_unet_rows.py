"""The U-Net rows of benchmarks/bench_cpu_inference.py: pix2pix's default generator (with
dropout) for both peers, recorded, train-mode outputs (whose dropout masks differ) still
checked; each model's untimed first call recorded."""
import time

import pytest
import torch

from helpers.benchmark_scripts import load_benchmark_script

bench_cpu_inference = load_benchmark_script("bench_cpu_inference")


@pytest.fixture
def small_network(monkeypatch):
    """The script's U-Net-256 at ngf 4: the same depth and dropout, a fraction of the work."""
    monkeypatch.setattr(bench_cpu_inference, "NETWORK", {**bench_cpu_inference.NETWORK, "ngf": 4})


def test_every_train_mode_model_draws_dropout_noise(small_network):
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        for (model, layout), (module, memory_format) in bench_cpu_inference._unet_models(
                False, True).items():
            x = image.contiguous(memory_format=memory_format)
            # batch statistics alone give the same output twice; dropout does not
            assert not torch.equal(module(x), module(x)), (model, layout)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_rows_record_dropout_and_both_modes_pass_their_output_check(small_network, train):
    rows = bench_cpu_inference.bench_unet(1, train=train)
    assert rows and all(row["dropout"] is True for row in rows)


def test_a_non_finite_train_mode_output_is_refused(small_network, monkeypatch):
    build = bench_cpu_inference._unet_models

    def with_broken_fastp2p(*args):
        models = build(*args)
        module, _ = models[("fastp2p.UNet", "nchw")]
        with torch.no_grad():
            next(module.parameters()).fill_(float("nan"))
        return models

    monkeypatch.setattr(bench_cpu_inference, "_unet_models", with_broken_fastp2p)
    with pytest.raises(AssertionError, match=r"fastp2p.UNet \(nchw\): train-mode output"):
        bench_cpu_inference.bench_unet(1, train=True)


def test_rows_record_each_models_first_call(small_network, monkeypatch):
    """A model whose first call is slow (as torch.compile's is) shows it in its row only."""
    build = bench_cpu_inference._unet_models

    def with_slow_first_call(*args):
        models = build(*args)
        module, memory_format = models[("fastp2p.UNet", "nchw")]
        calls = []

        def slow_first_call(x):
            if not calls:
                time.sleep(0.3)
            calls.append(x)
            return module(x)

        models[("fastp2p.UNet", "nchw")] = (slow_first_call, memory_format)
        return models

    monkeypatch.setattr(bench_cpu_inference, "_unet_models", with_slow_first_call)
    rows = {(row["model"], row["layout"]): row for row in bench_cpu_inference.bench_unet(1)}
    assert rows[("fastp2p.UNet", "nchw")]["first_call_ms"] >= 300
    assert all(0 < row["first_call_ms"] for row in rows.values())
