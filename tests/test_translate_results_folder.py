"""What `fastp2p test` does with its results folder RESULTS_DIR/NAME/PHASE_EPOCH: one run at a
time holds it (before, two runs into it both exited 0 and left a page listing a mix of both
runs' images), and its end line says what it left out of its page."""
import pytest

from fastp2p.cli import main
from fastp2p.train.run_lock import RunFolderLock
from helpers.train_helpers import one_line, tiny_test_argv, tiny_test_results
from test_translate_single_images import _save_generator, _write_random_images


def _single_images_argv(tmp_path, count: int, *extra):
    """A `fastp2p test --dataset_mode single` command line for ``count`` random 32x32 images
    (in tmp_path/images) and a tiny generator (in tmp_path/ck), results in tmp_path/res."""
    _save_generator(tmp_path / "ck", "--norm", "batch")
    _write_random_images(tmp_path / "images",
                         {f"img_{index}.png": (32, 32) for index in range(count)})
    return tiny_test_argv(tmp_path / "images", tmp_path / "ck", tmp_path / "res", "--norm",
                          "batch", "--dataset_mode", "single", *extra)


def test_a_second_run_into_a_held_results_folder_exits_75(tmp_path, capsys):
    argv = _single_images_argv(tmp_path, 2)
    results = tiny_test_results(tmp_path / "res")
    held = RunFolderLock(results)   # the first run, still translating
    held.acquire()
    try:
        assert main(argv) == 75
    finally:
        held.release()
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert "is in use: another `fastp2p test` run holds it" in line, line
    assert "--results_dir" in line and captured.out == ""   # before the data's lines
    assert not (results / "images").exists()
    assert main(argv) == 0   # once the first run is done
    assert not (results / ".lock").exists()


def test_a_results_folder_inside_dataroot_is_not_read_back(tmp_path, capsys):
    """Before, each run translated the last one's outputs too: 2, then 6 images, and
    img_0_fake_fake.png."""
    images = tmp_path / "images"
    argv = _single_images_argv(tmp_path, 2, "--results_dir", str(images / "results"))
    for _ in range(2):
        assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.count("translated 2 image(s)") == 2, captured.out
    written = sorted(path.name for path in (tiny_test_results(images / "results")
                                            / "images").iterdir())
    assert written == ["img_0_fake.png", "img_0_real.png", "img_1_fake.png", "img_1_real.png"]
    left_out = [line for line in captured.err.splitlines() if "that fastp2p writes" in line]
    assert left_out == 2 * [f"fastp2p: ignoring 1 folder in {images} that fastp2p writes its "
                            "outputs in (--results_dir, --checkpoints_dir: they are no input): "
                            "results"], captured.err   # each run: the first one made it


def test_a_checkpoints_folder_inside_the_train_split_is_not_listed(tmp_path, capsys):
    """Training's web/images samples would otherwise become training pairs of the next run."""
    from fastp2p.data import create_dataset
    from helpers.train_helpers import parsed_options, write_aligned_dataset

    data = write_aligned_dataset(tmp_path / "data", pairs=3)
    checkpoints = data / "train" / "ck"
    _write_random_images(checkpoints / "tiny" / "web" / "images", {"epoch001_fake_B.png":
                                                                    (64, 32)})
    args = parsed_options("train", "--dataroot", str(data), "--checkpoints_dir",
                          str(checkpoints), "--load_size", "32", "--crop_size", "32")
    assert len(create_dataset(args, "train")) == 3
    assert "ignoring 1 folder in " in capsys.readouterr().err


def test_the_end_line_says_when_num_test_left_images_out(tmp_path, capsys):
    """Before: "translated 2 image(s)", exit 0, and nothing said of the third."""
    assert main(_single_images_argv(tmp_path, 3, "--num_test", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    weights = tmp_path / "ck" / "tiny" / "latest_net_G.pth"
    assert f"translated 2 of 3 image(s) with {weights} (--num_test 2; --num_test 3 for all)" \
        in lines, lines


def test_the_end_line_counts_an_earlier_runs_images_it_leaves(tmp_path, capsys):
    """Before, 2 images then 1 left images/ with 4 files, a page of 2, and no word of it."""
    assert main(_single_images_argv(tmp_path, 2)) == 0
    capsys.readouterr()
    assert main(_single_images_argv(tmp_path, 2, "--num_test", "1")) == 0
    assert ("images/ also holds 2 files this run did not write (an earlier run's, kept); "
            "index.html lists only this run's") in capsys.readouterr().out.splitlines()
    assert len(list((tiny_test_results(tmp_path / "res") / "images").iterdir())) == 4


def test_the_pages_images_load_lazily(tmp_path):
    """A page of 300 triplets asked the browser for 900 images at once."""
    from fastp2p.train.html_page import write_html

    write_html(tmp_path / "index.html", "t", [("a", [("real", "images/a_real.png"),
                                                     ("fake", "images/a_fake.png")])])
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count("<img src='images/a_") == page.count("' loading='lazy'>") == 2


@pytest.mark.parametrize("variable, value", [("FASTP2P_BACKEND", "garbage"),
                                             ("FASTP2P_CONV", "Fused"),
                                             ("FASTP2P_CPU_DECONV", "gemm ")])
def test_a_bad_op_setting_is_refused_before_the_results_are_touched(tmp_path, monkeypatch,
                                                                    capsys, variable, value):
    """As train does: the ops read these at the first image, after the earlier run's page was
    deleted (QA limits2 #2: 'FASTP2P_BACKEND must be one of ...; the results ... are partial',
    exit code 1, index.html gone)."""
    argv = _single_images_argv(tmp_path, 2)
    assert main(argv) == 0
    results = tiny_test_results(tmp_path / "res")
    before = sorted(path.relative_to(results) for path in results.rglob("*"))
    capsys.readouterr()
    monkeypatch.setenv(variable, value)
    assert main(argv) == 1      # as train's
    line = one_line(capsys.readouterr().err)
    assert variable in line and "partial" not in line, line
    assert sorted(path.relative_to(results) for path in results.rglob("*")) == before
