"""What `fastp2p test` and the report pages show: the page's title names eval mode, and --eval
translates with the generator in eval mode; a run stopped early says how many images it wrote
and exits with 128 + the signal, while a stop request during the last image leaves the run
complete; a long output name keeps 16 hex digits of its hash; ``tensor_to_image`` truncates as
the reference's tensor2im and repeats one channel to three, so a gray-to-colour model writes an
RGB real_A and prints no identity baseline; a page keeps its sections' order, escapes its text
and refreshes only when asked."""
import argparse
import hashlib
import os
import random
import signal
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fastp2p.nn
from fastp2p.cli import main
from fastp2p.train.html_page import write_html
from fastp2p.train.loss_log import LossLog
from fastp2p.train.report_removal import remove_reports
from fastp2p.train.sample_images import tensor_to_image
from fastp2p.train.training_page import TrainingPage
from fastp2p.train.result_names import fit_file_name
from fastp2p.train.translate_command import _report
from fastp2p.train.triplet_writing import Translated, _page_title
from helpers.train_helpers import (TEST_PAIRS, tiny_test_argv, tiny_test_results, train_argv,
                                   trained, write_aligned_dataset)  # noqa: F401 (fixture)
from helpers.link_helpers import as_another_user
from test_translate_stop_requests import L1_REPORT, _run_signalled


def _args(eval_mode: bool) -> argparse.Namespace:
    return argparse.Namespace(name="facades_x", phase="val", epoch="7", eval=eval_mode)


def test_the_page_title_names_eval_mode_and_a_partial_run():
    assert _page_title(_args(True), None, 5, 5) == "facades_x: val, epoch 7 (eval mode)"
    assert _page_title(_args(False), None, 5, 5) == "facades_x: val, epoch 7"
    assert _page_title(_args(True), signal.SIGTERM, 2, 5) == (
        "facades_x: val, epoch 7 (eval mode) (partial: stopped by SIGTERM after 2 of 5 images)")


def test_a_stopped_run_reports_the_images_it_wrote(tmp_path, capsys):
    """The stop's line was on stdout, the results' stream (train's and bench's: stderr)."""
    weights = tmp_path / "latest_net_G.pth"
    translated = Translated(count=2, total=9, scores=None, stopped_by=int(signal.SIGINT))
    assert _report(translated, weights, tmp_path) == 128 + signal.SIGINT
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"translated 2 image(s) with {weights}",
                                f"open: {(Path(tmp_path) / 'index.html').resolve()}",
                                f"scores: {(Path(tmp_path) / 'scores.json').resolve()}"]
    assert err.splitlines() == ["SIGINT received: stopped after 2 of 9 images; the results are "
                                "partial, and index.html says so"]
    whole = Translated(count=9, total=9, scores=None, stopped_by=None)
    assert _report(whole, weights, tmp_path) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"translated 9 image(s) with {weights}"


def test_a_stop_request_while_the_last_image_is_written_leaves_the_run_complete(tmp_path,
                                                                                trained):
    """SIGINT after the last image's fake_B is saved (the 3 * TEST_PAIRS - 1th save): every
    image is still written whole, so the run is complete."""
    run = _run_signalled(tmp_path, trained, {f"save {3 * TEST_PAIRS - 1}": ["SIGINT"]})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert L1_REPORT in run.stdout and "received" not in output, output
    assert f"translated {TEST_PAIRS} image(s) with" in run.stdout, output
    page = (tiny_test_results(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert "partial" not in page and f"images/{TEST_PAIRS - 1:03d}_fake_B.png" in page


def test_a_long_name_keeps_its_first_bytes_and_16_hex_digits_of_its_hash():
    rng = random.Random(11)
    stem = "".join(rng.choice("abcdefgh_é") for _ in range(260))
    name = fit_file_name(stem)
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:16]
    head = name[:-17]
    assert name == f"{head}-{digest}" and stem.startswith(head)
    # as many whole characters as fit in 200 bytes with the hash and its "-"
    assert len(os.fsencode(head)) <= 200 - 17 < len(os.fsencode(stem[:len(head) + 1]))


def test_eval_translates_with_the_generator_in_eval_mode(tmp_path, trained, monkeypatch):
    """--eval: batch norm on its running statistics, dropout off (the reference's
    model.eval()); without it the generator stays in train mode, as the reference's test."""
    data, checkpoints = trained
    original, training = fastp2p.nn.graphed, []

    def recording(netG):
        forward = original(netG)

        def translate(real_A):
            training.append(netG.training)
            return forward(real_A)
        return translate
    monkeypatch.setattr(fastp2p.nn, "graphed", recording)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "eval", "--eval")) == 0
    assert training == [False] * TEST_PAIRS
    training.clear()
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "train")) == 0
    assert training == [True] * TEST_PAIRS


def test_values_are_truncated_as_the_reference_does():
    image = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 0.999]).reshape(3, 1, 2)
    assert tensor_to_image(image).reshape(-1).tolist() == [0, 127, 255, 63, 191, 254]
    generator = torch.Generator().manual_seed(4)
    image = torch.rand(3, 5, 7, generator=generator) * 2 - 1
    expected = np.floor((image.permute(1, 2, 0).numpy() + 1) / 2.0 * 255.0)
    assert (tensor_to_image(image) == expected).all()


def test_one_channel_is_repeated_to_three():
    generator = torch.Generator().manual_seed(5)
    gray = torch.rand(1, 6, 4, generator=generator) * 2 - 1
    picture = tensor_to_image(gray)
    assert picture.shape == (6, 4, 3) and picture.dtype == np.uint8
    assert (picture == tensor_to_image(gray.expand(3, 6, 4))).all()


def test_a_gray_to_colour_model_is_tested_without_an_identity_baseline(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, seed=9)
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0", "--no_html",
                           "--input_nc", "1")) == 0
    capsys.readouterr()
    assert main(tiny_test_argv(data, tmp_path / "ckpt", tmp_path / "results",
                               "--input_nc", "1")) == 0
    out = capsys.readouterr().out
    assert "L1 to real_B over 2 image(s)" in out and "identity baseline" not in out, out
    real_A = np.asarray(Image.open(tiny_test_results(tmp_path / "results") / "images"
                                   / "000_real_A.png"))
    assert real_A.shape == (32, 32, 3)
    assert (real_A[..., 0] == real_A[..., 1]).all() and (real_A[..., 1] == real_A[..., 2]).all()


def test_a_page_keeps_its_sections_order_escapes_its_text_and_refreshes_if_asked(tmp_path):
    order = ("epoch003", "epoch001", "epoch002")
    sections = [(f"<i>{stem}</i>", [("real_A", f"images/{stem}_real_A.png")])
                for stem in order]
    page = tmp_path / "index.html"
    write_html(page, "run <x> & 'y'", sections, refresh_s=60.7)
    text = page.read_text(encoding="utf-8")
    assert "<title>run &lt;x&gt; &amp; &#x27;y&#x27;</title>" in text
    assert "<h1>run &lt;x&gt; &amp; &#x27;y&#x27;</h1>" in text and "<x>" not in text
    assert text.count("<meta http-equiv='refresh' content='60'>") == 1
    headings = [text.index(f"<h3>&lt;i&gt;{stem}&lt;/i&gt;</h3>") for stem in order]
    assert headings == sorted(headings)
    write_html(page, "t", sections)
    assert "http-equiv" not in page.read_text(encoding="utf-8")


def test_the_training_page_lists_its_samples_newest_first(tmp_path):
    """Sorted by name, newest first: epoch 10's sample above epoch 9's (zero-padded names)."""
    page = TrainingPage(tmp_path / "web", "tiny")
    generator = torch.Generator().manual_seed(8)
    for epoch, step in ((9, 120), (10, 135), (2, 30)):
        triplet = [torch.rand(1, 3, 8, 8, generator=generator) * 2 - 1 for _ in range(3)]
        page.add_sample(epoch, step, triplet)
    page.refresh(LossLog(tmp_path / "loss_log.csv"))
    text = page.index.read_text(encoding="utf-8")
    headings = ["epoch010, step0000135", "epoch009, step0000120", "epoch002, step0000030"]
    positions = [text.index(f"<h3>{heading}</h3>") for heading in headings]
    assert positions == sorted(positions)
    assert "images/epoch010_step0000135_fake_B.png" in text and "http-equiv='refresh'" in text
    assert "loss.png" not in text   # no losses logged: no plot, and no link to one


def _log_row(step: int, rng) -> dict:
    return {"epoch": 1, "step": step, "images": 2 * step, "lr": 2e-4,
            **{name: rng.random() for name in ("G_GAN", "G_L1", "D_real", "D_fake")},
            "images_per_s": 10 * rng.random()}


def test_a_frozen_loss_log_keeps_its_rows_while_the_log_goes_on(tmp_path):
    rng = random.Random(12)
    log = LossLog(tmp_path / "loss_log.csv")
    log.append(_log_row(1, rng))
    view = log.frozen()
    log.append(_log_row(2, rng))
    assert [row["step"] for row in view.rows] == [1]
    assert [row["step"] for row in log.rows] == [1, 2]


def test_overwrite_removes_nothing_under_another_users_web_link(tmp_path, monkeypatch):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (elsewhere / "images").mkdir(parents=True)
    run.mkdir()
    theirs = {name: os.urandom(16) for name in (
        "index.html", "loss.png", "images/epoch001_step0000004_real_A.png")}
    for name, data in theirs.items():
        (elsewhere / name).write_bytes(data)
    (run / "loss_log.csv").write_bytes(os.urandom(16))
    link = run / "web"
    link.symlink_to(elsewhere)
    as_another_user(monkeypatch, link)
    remove_reports(run)
    assert not (run / "loss_log.csv").exists()
    assert {name: (elsewhere / name).read_bytes() for name in theirs} == theirs


def test_overwrite_removes_no_sample_under_another_users_images_link(tmp_path, monkeypatch):
    """Your own web/ folder, another user's link at web/images: its samples stay; the page
    and plot in web/ go."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (run / "web").mkdir(parents=True)
    elsewhere.mkdir()
    theirs = {name: os.urandom(16) for name in ("epoch001_step0000004_real_A.png",
                                                "epoch002_step0000008_fake_B.png")}
    for name, data in theirs.items():
        (elsewhere / name).write_bytes(data)
    for name in ("index.html", "loss.png"):
        (run / "web" / name).write_bytes(os.urandom(16))
    link = run / "web" / "images"
    link.symlink_to(elsewhere)
    as_another_user(monkeypatch, link)
    remove_reports(run)
    assert sorted(path.name for path in (run / "web").iterdir()) == ["images"]
    assert {name: (elsewhere / name).read_bytes() for name in theirs} == theirs


def test_without_load_size_each_whole_image_is_read_at_crop_size(tmp_path, trained):
    """--load_size follows --crop_size (the reference's test means load = crop): real_A is the
    whole A half of the pair, not a random crop of it resized to the default load size."""
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path)
    at = argv.index("--load_size")
    assert main(argv[:at] + argv[at + 2:]) == 0
    pair = np.asarray(Image.open(data / "test" / "000.png").convert("RGB"), dtype=np.int16)
    real_A = np.asarray(Image.open(tiny_test_results(tmp_path) / "images" / "000_real_A.png"),
                        dtype=np.int16)
    assert real_A.shape == (32, 32, 3)
    assert np.abs(real_A - pair[:, :32]).max() <= 1   # truncation after normalising
