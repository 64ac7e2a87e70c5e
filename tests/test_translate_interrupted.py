"""`fastp2p test` ended early (a reviewer's repros, each failing before its fix): an earlier
run's index.html is gone before the first image is written, so no page shows two models'
images; SIGTERM stops between images as Ctrl-C does, leaving no temporary files and a page
titled partial; temporary files of killed runs are removed by the next run; a full disk names
the image; a discriminator's file under the generator's name is called what it is."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastp2p.train.sample_images as sample_images
from fastp2p.cli import main
from helpers.data_helpers import dead_pid
from helpers.train_helpers import (TEST_PAIRS, one_line, tiny_networks, tiny_test_argv,
                                   tiny_test_results, trained)  # noqa: F401 (fixture)
from test_disk_full_messages import NO_SPACE, fill_temporary_files


def _temporary_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if ".tmp-" in path.name)


def test_an_earlier_runs_page_is_removed_before_the_first_image(tmp_path, trained,
                                                                monkeypatch, capsys):
    """The second run fails at its second image: the first run's page listed all three of
    its images, two of them now the first run's, one the second's."""
    data, checkpoints = trained
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 0
    page = tiny_test_results(tmp_path) / "index.html"
    assert page.is_file()
    saved, pages_seen = [], []
    original = sample_images.save_image

    def save_then_fail(image, path, aspect_ratio=1.0):
        pages_seen.append(page.exists())
        if len(saved) == 4:   # real_A of the second image is written, its fake_B is not
            raise OSError(errno.ENOSPC, NO_SPACE, str(path))
        original(image, path, aspect_ratio)
        saved.append(path)
    monkeypatch.setattr(sample_images, "save_image", save_then_fail)
    capsys.readouterr()
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 1
    assert pages_seen[0] is False and not page.exists()
    error = one_line(capsys.readouterr().err)
    assert f"{tiny_test_results(tmp_path)} are partial (1 of {TEST_PAIRS} images written, " \
        "no index.html)" in error and "001_fake_B.png" in error, error


# SIGTERM in this process would end pytest without the fix: the run is a child process.
_SIGNAL_AFTER_SAVES = """
import json, os, signal, sys
import PIL.Image
from fastp2p.cli import main
after, argv = int(sys.argv[1]), json.loads(sys.argv[2])
original, saves = PIL.Image.Image.save, []
def save_then_signal(self, *args, **kwargs):
    original(self, *args, **kwargs)   # the temporary file is written, not yet renamed
    saves.append(1)
    if len(saves) == after:
        os.kill(os.getpid(), signal.SIGTERM)
PIL.Image.Image.save = save_then_signal
sys.exit(main(argv))
"""


def test_sigterm_stops_between_images_as_ctrl_c_does(tmp_path, trained):
    """SIGTERM while the first image's fake_B is written: before, the process died there,
    leaving .000_fake_B.png.tmp-PID.png (and an earlier run's page, had there been one)."""
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path)
    run = subprocess.run([sys.executable, "-c", _SIGNAL_AFTER_SAVES, "2", json.dumps(argv)],
                         cwd=tmp_path,   # not the checkout: its fastp2p/ would shadow the install
                         capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 128 + 15, run.stdout + run.stderr
    assert f"SIGTERM received: stopped after 1 of {TEST_PAIRS} images" in run.stderr, run.stderr
    results = tiny_test_results(tmp_path)
    assert _temporary_files(results) == []
    assert sorted(os.listdir(results / "images")) == [f"000_{label}.png" for label in
                                                      sorted(sample_images.TRIPLET)]
    page = (results / "index.html").read_text(encoding="utf-8")
    assert f"(partial: stopped by SIGTERM after 1 of {TEST_PAIRS} images)" in page
    assert "images/000_fake_B.png" in page and "001" not in page


def test_a_later_run_removes_temporary_files_of_killed_runs(tmp_path, trained):
    data, checkpoints = trained
    results = tiny_test_results(tmp_path)
    (results / "images").mkdir(parents=True)
    dead = dead_pid()
    killed = [results / "images" / f".001_fake_B.png.tmp-{dead}.png",
              results / f".index.html.tmp-{dead}.html"]
    alive = results / "images" / f".001_fake_B.png.tmp-{os.getppid()}.png"  # a live writer's
    for path in (*killed, alive):
        path.write_bytes(b"partial")
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 0
    assert _temporary_files(results) == [alive.name]


def test_a_full_disk_while_saving_an_image_names_the_image(tmp_path, trained, monkeypatch,
                                                          capsys):
    """Pillow's write fails naming no file: the error said "[Errno 28] No space left on
    device" and nothing else."""
    data, checkpoints = trained
    fill_temporary_files(monkeypatch, 100, which=lambda number: number == 2)
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 1
    error = one_line(capsys.readouterr().err)
    image = tiny_test_results(tmp_path) / "images" / "000_fake_B.png"
    assert error.startswith(f"fastp2p test: error: {image}: {NO_SPACE}; "), error
    assert "None" not in error, error
    assert f"partial (0 of {TEST_PAIRS} images written, no index.html)" in error, error
    assert _temporary_files(tmp_path) == []
    assert not (tiny_test_results(tmp_path) / "index.html").exists()


def test_a_discriminator_under_the_generators_name_is_called_one(tmp_path, trained, capsys):
    """It said "was saved by other model options: pass --netD basic --ndf 4 ...", options
    `fastp2p test` does not use."""
    data, checkpoints = trained
    run = tmp_path / "checkpoints" / "tiny"
    run.mkdir(parents=True)
    shutil.copy(checkpoints / "tiny" / "latest_net_D.pth", run / "latest_net_G.pth")
    assert main(tiny_test_argv(data, tmp_path / "checkpoints", tmp_path / "results")) == 1
    error = one_line(capsys.readouterr().err)
    assert error.startswith(f"fastp2p test: error: {run / 'latest_net_G.pth'} holds a PatchGAN "
                            "discriminator, not a generator"), error
    assert "--netD" not in error, error


def test_a_generator_under_the_discriminators_name_is_called_one(tmp_path):
    import torch

    from fastp2p.train.checkpoints import CheckpointFolder
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.path.mkdir()
    torch.save(netG.state_dict(), folder.file("latest", "net_D.pth"))
    with pytest.raises(ValueError, match=r"latest_net_D\.pth holds a U-Net generator, not a "
                                         r"discriminator \(a net_G\.pth file"):
        folder.load_network(netD, "latest", "D")
