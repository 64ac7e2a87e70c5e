"""The bench's end-to-end job keeps the bench's torch thread count, and results record the
commit of the code that ran (the checkout holding the imported fastp2p), not the working
directory's."""
import os
import subprocess

import pytest
import torch

import fastp2p
from fastp2p.bench import environment, suite
from fastp2p.bench.command import add_arguments, settings_from_args
from fastp2p.bench.end_to_end import EndToEndSettings, end_to_end_job
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Log
from fastp2p.train import cpu_threads

# None where fastp2p is installed, not imported from a checkout (CI's `pip install .`)
PACKAGE_CHECKOUT = environment.package_checkout()


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_end_to_end_training_runs_at_the_bench_thread_count_and_keeps_it(
        torch_threads, monkeypatch):
    # more threads than this machine's cores: train's own choice would be fewer
    bench_threads = (os.cpu_count() or 1) + 1
    torch.set_num_threads(bench_threads)
    described = environment.describe("cpu", None)["torch_threads"]
    chosen = []
    apply = cpu_threads.apply_thread_choice
    monkeypatch.setattr(cpu_threads, "apply_thread_choice",
                        lambda choice: (chosen.append(choice.torch_threads), apply(choice)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    job = end_to_end_job(1, 1, EndToEndSettings(QUICK_CONFIG, (1,), 2, 1, "cpu"))
    (row,) = job.run()
    assert row["images_per_s"] > 0
    assert chosen == [bench_threads]                   # the training ran at the bench's count
    assert torch.get_num_threads() == bench_threads == described  # and the next job does too
    assert "OMP_NUM_THREADS" not in os.environ         # the variable is put back as well


def test_thread_count_is_restored_when_train_changes_it_anyway(torch_threads, monkeypatch):
    from fastp2p.bench import end_to_end
    from fastp2p.train import train_command

    torch.set_num_threads(2)

    def changes_threads(args, times, name_files):
        torch.set_num_threads(1)
        return 0

    monkeypatch.setattr(train_command, "run", changes_threads)
    end_to_end.run_train(["train", "--dataroot", "unused"], 1)
    assert torch.get_num_threads() == 2


def _git(folder, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                   check=True, capture_output=True)


@pytest.fixture
def other_checkout(tmp_path, monkeypatch):
    """The working directory: a git repository that looks like a fastp2p checkout."""
    folder = tmp_path / "other"
    (folder / "benchmarks").mkdir(parents=True)
    (folder / "benchmarks" / "__init__.py").write_text("")
    (folder / "fastp2p").mkdir()
    _git(folder, "init", "-q")
    _git(folder, "add", ".")
    _git(folder, "commit", "-q", "-m", "other")
    monkeypatch.chdir(folder)
    return folder


def _commit_from_the_suite(monkeypatch) -> str:
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    settings = suite.SuiteSettings(
        quick=True, device="cpu", sections=(), config=QUICK_CONFIG, batch_sizes=(1,), steps=1,
        warmup=0, peers=(peer_by_name("fastp2p"),), job_time_limit=None, time_budget=None,
        benchmarks_dir=None, inference_rep_ms=1.0)
    return suite.run_suite(settings, log=Log(open(os.devnull, "w")))["environment"]["commit"]


def test_results_record_the_commit_of_the_imported_package_not_of_the_cwd(other_checkout,
                                                                           monkeypatch):
    other_commit, _ = environment.git_commit(other_checkout)
    package_commit = environment.git_commit(PACKAGE_CHECKOUT)[0] if PACKAGE_CHECKOUT else "unknown"
    assert other_commit != "unknown"
    assert _commit_from_the_suite(monkeypatch) == package_commit != other_commit
    # and the micro section's scripts come from the same checkout (none for an installed one)
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--quick", "--sections", "micro"]))
    assert settings.benchmarks_dir == (PACKAGE_CHECKOUT / "benchmarks" if PACKAGE_CHECKOUT
                                       else None)


def test_an_installed_package_records_unknown_not_the_cwd_commit(other_checkout, tmp_path,
                                                                 monkeypatch):
    installed = tmp_path / "site-packages" / "fastp2p" / "__init__.py"
    installed.parent.mkdir(parents=True)
    monkeypatch.setattr(fastp2p, "__file__", str(installed))
    assert _commit_from_the_suite(monkeypatch) == "unknown"
    assert environment.package_checkout() is None


def test_a_folder_inside_another_repository_gets_no_commit(tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "unpacked"
    (inner / "benchmarks").mkdir(parents=True)
    (inner / "benchmarks" / "__init__.py").write_text("")
    (inner / "fastp2p").mkdir()
    _git(outer, "init", "-q")
    (outer / "file").write_text("x")
    _git(outer, "add", "file")
    _git(outer, "commit", "-q", "-m", "outer")
    assert environment.git_commit(inner) == ("unknown", None)
    assert environment.git_commit(outer)[0] != "unknown"
