"""What the training page (web/index.html, its samples and loss plot) and the end summary show
(QA r1): after a resume from an older epoch, the samples of the run it discards are gone; a
plot that cannot be drawn leaves the page, and the summary says what is on disk."""
import csv
import re

import pytest
import torch

import fastp2p.train.training_page as training_page_module
from fastp2p.cli import main
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.loss_log import LOG_FIELDS, LossLog
from fastp2p.train.sample_images import TRIPLET
from fastp2p.train.training_page import TrainingPage
from helpers.train_helpers import train_argv, write_aligned_dataset


def _page_steps(run) -> list:
    """The steps of the sample sections web/index.html lists, top to bottom."""
    page = (run / "web" / "index.html").read_text()
    return [int(step) for step in re.findall(r"<h3>epoch\d+, step(\d+)</h3>", page)]


def test_a_resume_from_an_older_epoch_deletes_the_discarded_runs_samples(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    checkpoints, run = tmp_path / "ckpt", tmp_path / "ckpt" / "tiny"
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1")) == 0
    assert max(_page_steps(run)) == 8   # 2 epochs of 4 steps
    # from epoch 1 (step 4) with batch 2: this run's steps are 5 and 6
    assert main(train_argv(data, checkpoints, "--continue_train", "--epoch", "1",
                           "--batch_size", "2")) == 0
    # this run's sample at step 6 replaced the discarded run's file of that name: kept
    assert _page_steps(run)[0] == 6 and max(_page_steps(run)) == 6
    images = sorted(path.name for path in (run / "web" / "images").iterdir())
    assert not [name for name in images if "step0000008" in name], images
    _assert_page_lists_files_on_disk(run)


def test_a_resume_that_fails_before_it_saves_leaves_the_discarded_runs_samples(tmp_path,
                                                                                 monkeypatch):
    """latest_* still holds the discarded run, which a plain --continue_train goes on with:
    its samples stay (unlisted) until the resume's first save is on disk."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    checkpoints, run = tmp_path / "ckpt", tmp_path / "ckpt" / "tiny"
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1")) == 0
    step = Pix2PixEngine.step

    def step_or_fail(engine, real_A, real_B):
        if engine.steps == 6:   # after this run's sample at step 6, before any save
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        step(engine, real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", step_or_fail)
    assert main(train_argv(data, checkpoints, "--continue_train", "--epoch", "1")) == 1
    images = [path.name for path in (run / "web" / "images").iterdir()]
    assert len([name for name in images if "step0000008" in name]) == 3, sorted(images)
    assert _page_steps(run) == [6, 3]   # the page this run drew: no step past 4 but its own
    _assert_page_lists_files_on_disk(run)


def _image_bytes(run) -> dict:
    return {path.name: path.read_bytes() for path in (run / "web" / "images").iterdir()}


def test_a_resume_that_fails_before_it_saves_changes_no_sample_of_the_kept_run(tmp_path,
                                                                              monkeypatch):
    """Its samples are staged until its first save: with another --lr, its image at step 6
    replaced the kept run's of that name, which a plain --continue_train then showed as its
    own. One that saves renames its staged samples into place."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    checkpoints, run = tmp_path / "ckpt", tmp_path / "ckpt" / "tiny"
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1")) == 0
    kept = _image_bytes(run)
    step = Pix2PixEngine.step

    def step_or_fail(engine, real_A, real_B):
        if engine.steps == 6:   # after this run's sample at step 6, before any save
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        step(engine, real_A, real_B)
    resume = ("--continue_train", "--epoch", "1", "--lr", "0.05")
    with monkeypatch.context() as patch:
        patch.setattr(Pix2PixEngine, "step", step_or_fail)
        assert main(train_argv(data, checkpoints, *resume)) == 1
    failed = _image_bytes(run)
    changed = sorted(name for name in kept if failed.get(name) != kept[name])
    assert not changed, changed
    assert main(train_argv(data, checkpoints, *resume)) == 0
    names = sorted(_image_bytes(run))
    assert not [name for name in names if TrainingPage.STAGED in name], names
    assert max(_page_steps(run)) == 8 and _page_steps(run)[0] == 8
    assert len([name for name in names if "step0000006" in name]) == 3, names
    _assert_page_lists_files_on_disk(run)


def _logged_steps(run) -> list:
    with open(run / "loss_log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_the_discarded_runs_loss_rows_stay_until_the_resumes_first_save(tmp_path, monkeypatch):
    """loss_log.csv drops the rows past the resumed step only once the resume has saved: one
    that fails before leaves the log of the run latest_* still holds (it was cut at once)."""
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    checkpoints, run = tmp_path / "ckpt", tmp_path / "ckpt" / "tiny"
    assert main(train_argv(data, checkpoints, "--save_epoch_freq", "1", "--log-every", "1")) == 0
    logged = _logged_steps(run)
    assert max(logged) == 8
    step = Pix2PixEngine.step

    def step_or_fail(engine, real_A, real_B):
        if engine.steps == 6:   # rows logged at steps 5 and 6, before any save
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        step(engine, real_A, real_B)
    with monkeypatch.context() as patch:
        patch.setattr(Pix2PixEngine, "step", step_or_fail)
        assert main(train_argv(data, checkpoints, "--continue_train", "--epoch", "1",
                               "--log-every", "1")) == 1
    assert _logged_steps(run) == logged
    assert main(train_argv(data, checkpoints, "--continue_train", "--epoch", "1",
                           "--log-every", "1")) == 0
    assert _logged_steps(run) == list(range(1, 9))   # steps 5..8 this run's, once each


def _assert_page_lists_files_on_disk(run) -> None:
    page = (run / "web" / "index.html").read_text()
    missing = [source for source in re.findall(r"<img src='(images/[^']+)'", page)
               if not (run / "web" / source).is_file()]
    assert not missing, missing


def _summary_line(out: str, start: str):
    """The end summary's line that starts with ``start``, or None."""
    return next((line for line in out.splitlines() if line.startswith(start)), None)


def test_a_run_name_with_dollar_signs_is_drawn_as_typed(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    # mathtext would parse 'a$^$b' and fail: no plot, no page
    assert main(train_argv(data, tmp_path / "ckpt", "--name", "a$^$b")) == 0
    out, err = capsys.readouterr()
    web = tmp_path / "ckpt" / "a$^$b" / "web"
    assert (web / "loss.png").is_file() and (web / "index.html").is_file()
    assert "warning" not in err, err
    assert _summary_line(out, "loss plot:   ") == f"loss plot:   {web / 'loss.png'}"


def _plot_fails(self, path, title):
    raise ValueError("\nthe first line that says something\nand more")


def test_a_plot_that_cannot_be_drawn_leaves_the_page_and_is_said_so(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(LossLog, "plot", _plot_fails)
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt")) == 0
    out, err = capsys.readouterr()
    web = tmp_path / "ckpt" / "tiny" / "web"
    assert (web / "index.html").is_file() and not (web / "loss.png").exists()
    assert "was not written (ValueError: the first line that says something)" in err, err
    assert _summary_line(out, "loss plot:   ") == ("loss plot:   none (it could not be drawn: "
                                                   "see the warning above)")
    assert _summary_line(out, "open:        ") == f"open:        {web.resolve() / 'index.html'}"


def _page_fails(*args, **kwargs):
    raise ValueError("no page")


def test_no_open_line_for_a_page_that_could_not_be_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training_page_module, "write_html", _page_fails)
    data = write_aligned_dataset(tmp_path / "data", phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt")) == 0
    out, err = capsys.readouterr()
    assert "(ValueError: no page)" in err, err
    assert _summary_line(out, "open:") is None, out


def test_samples_are_listed_newest_first_by_epoch_and_step_numbers(tmp_path):
    page = TrainingPage(tmp_path / "web", "run")
    # the names add_sample writes from epoch 1000 and step 10**7 on, and below
    stems = ["epoch999_step9999999", "epoch1000_step10000000", "epoch1001_step10000008",
             "epoch998_step0000001"]
    for stem in stems:
        for label in TRIPLET:
            (page.images / f"{stem}_{label}.png").write_bytes(b"")
    page.refresh(LossLog(tmp_path / "loss_log.csv"))
    assert _page_steps(tmp_path) == [10000008, 10000000, 9999999, 1]


def _loss_log(tmp_path, steps):
    log = LossLog(tmp_path / "loss_log.csv")
    for step in steps:
        log.append({**dict.fromkeys(LOG_FIELDS, 0.5), "step": step})
    return log


@pytest.mark.parametrize("steps", [[4], [4, 8], [3, 6, 9, 10]], ids=["1row", "2rows", "4rows"])
def test_the_loss_plot_marks_few_points_and_ticks_whole_steps(tmp_path, steps):
    import matplotlib.pyplot as plt

    figure = _loss_log(tmp_path, steps).figure("run: losses")
    try:
        for axis in figure.axes:
            assert [line.get_marker() for line in axis.get_lines()] == \
                ["o"] * len(axis.get_lines())   # one row drew nothing as a line alone
        low, high = figure.axes[1].get_xlim()
        ticks = [tick for tick in figure.axes[1].get_xticks() if low <= tick <= high]
        assert ticks and all(tick == int(tick) for tick in ticks), ticks
    finally:
        plt.close(figure)


def _drawn_steps(axis) -> list:
    """The steps each of ``axis``'s lines and point sets draws, in its legend's order."""
    return [[int(step) for step in line.get_xdata()] for line in axis.get_lines()]


def test_rows_of_a_short_window_are_hollow_points_off_the_line(tmp_path):
    import matplotlib.pyplot as plt

    # --log-every 4 in epochs of 10 steps: the rows at 10 (epoch end) and 12 average 2 steps
    log = _loss_log(tmp_path, [4, 8, 10, 12, 16, 20])
    figure = log.figure("run: losses")
    try:
        l1_axis = figure.axes[1]
        assert _drawn_steps(l1_axis) == [[4, 8, 16, 20], [10, 12], []]
        hollow = l1_axis.get_lines()[1]
        assert hollow.get_linestyle() == "None" and hollow.get_markerfacecolor() == "none"
        assert [text.get_text() for text in l1_axis.get_legend().get_texts()] == \
            ["G_L1 (x lambda)", "fewer steps averaged"]
    finally:
        plt.close(figure)
    assert [row["step"] for row in log.rows] == [4, 8, 10, 12, 16, 20]   # the log keeps them


def test_evenly_spaced_rows_are_one_line(tmp_path):
    import matplotlib.pyplot as plt

    figure = _loss_log(tmp_path, [5, 10, 15, 20]).figure("run: losses")
    try:
        assert _drawn_steps(figure.axes[1]) == [[5, 10, 15, 20]]
    finally:
        plt.close(figure)
