"""A link swapped in at a temporary file's name just after fastp2p created it is never written
through, by any writer.

In a folder other users can write (a shared run folder), one of them can watch for fastp2p's
temporary files (inotify) and rename a link to a file of yours over each as it appears. Writers
that reopened the temporary file by its name (Pillow's save, matplotlib's savefig, torch.save,
write_text) then wrote into the link's target: a QA pass overwrote a file with every image of
`fastp2p test`, the run's page and a checkpoint set. Here every such creation loses that race at
once; the writes must go to the file created, and the name taken over is not renamed into place
(its write fails, naming it), so the victim's file keeps its bytes.
"""
import argparse
import os

import pytest
import torch

import fastp2p
from fastp2p.atomic_files import ReplacedWhileWritten, replacing
from fastp2p.bench.results_files import write_json
from fastp2p.data.pack import pack_phase
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from fastp2p.train.sample_images import save_image
from fastp2p.train.saved_options import write_options
from helpers.data_helpers import make_aligned

VICTIM_BYTES = b"the victim's own file\n"


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_bytes(VICTIM_BYTES)
    return path


@pytest.fixture
def links_swapped_in(monkeypatch, victim):
    """Each temporary file fastp2p creates (O_EXCL, a ``.tmp-`` name) has a link to ``victim``
    renamed over its name as soon as it is created; the names it happened to."""
    real_open, swapped = os.open, []

    def open_then_swap(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_EXCL and ".tmp-" in os.fspath(path):
            link = f"{os.fspath(path)}.link"
            os.symlink(victim, link)
            os.replace(link, path)
            swapped.append(os.path.basename(path))
        return fd
    monkeypatch.setattr(os, "open", open_then_swap)
    return swapped


def test_replacing_writes_the_file_it_created_and_refuses_the_name_taken_over(
        tmp_path, victim, links_swapped_in):
    target = tmp_path / "page.html"
    with pytest.raises(ReplacedWhileWritten, match="replaced by something else") as raised:
        with replacing(target) as file:
            file.write(b"new page")
    assert raised.value.filename == str(tmp_path / links_swapped_in[0])
    assert links_swapped_in
    assert victim.read_bytes() == VICTIM_BYTES
    assert not target.exists() and not target.is_symlink()


def _image(folder):
    save_image(torch.rand(3, 8, 8) * 2 - 1, folder / "sample.png")


def _options(folder):
    write_options(argparse.Namespace(name="run", lr=0.0002), folder / "train_opt.txt")


def _checkpoint(folder):
    netG = fastp2p.UNet(3, 3, 5, ngf=4)
    netD = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2)
    CheckpointFolder(folder, "run").save(["latest"], netG, netD, {"tag": "state"}, step=1)


def _pack(folder):
    make_aligned(folder / "data", count=2)
    pack_phase(folder / "data", folder / "packed", "train", load_size=16, progress=False)


def _bench_results(folder):
    write_json({"run_id": "r", "mode": "quick", "device_slug": "cpu",
                "environment": {"date": "20261207", "commit": "abc1234"}}, folder)


@pytest.mark.parametrize("write", [_image, _options, _checkpoint, _pack, _bench_results],
                         ids=["image", "options", "checkpoint", "pack", "bench-results"])
def test_no_writer_writes_through_a_link_swapped_in(tmp_path, victim, links_swapped_in, write):
    with pytest.raises((OSError, CheckpointWriteError)) as raised:
        write(tmp_path)
    assert links_swapped_in, "the writer created no temporary file"
    assert ".tmp-" in str(raised.value)
    assert victim.read_bytes() == VICTIM_BYTES
