"""What a person looks at: image files, loss_log.csv, the loss plot and the HTML pages.

Images are written as the reference's ``tensor2im`` does it (x in [-1, 1] -> (x + 1) / 2 * 255,
truncated to uint8; one channel repeated to three). Plots use matplotlib's Agg backend, so no
display is needed. Files other people may be reading (plot, pages) are replaced atomically.
"""
import contextlib
import copy
import csv
import html
import io
import itertools
import math
import os
import re
import threading
import warnings
from functools import partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch

from fastp2p.atomic_files import (create_empty_file, naming_the_file, open_plain_file,
                                  refuse_linked_folder, refuse_unless_plain_file, replace_text,
                                  replacing)
from fastp2p.file_reads import open_to_read
from fastp2p.train.engine import LOSS_NAMES
from fastp2p.train.image_sizes import aspect_ratio_size

LOG_FIELDS = ("epoch", "step", "images", "lr", *LOSS_NAMES, "images_per_s")
TRIPLET = ("real_A", "fake_B", "real_B")
LOSS_LOG = "loss_log.csv"  # in the run folder
WEB = "web"                # the run folder's TrainingPage
# the training state's key for TrainingPage.staged_record: that save's run's samples are staged
STAGED_RECORD = "staged_samples"


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """One C x H x W tensor in [-1, 1] -> H x W x 3 uint8, exactly as the reference."""
    array = image.detach().float().cpu().numpy()
    if array.shape[0] == 1:
        array = np.tile(array, (3, 1, 1))
    return ((np.transpose(array, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)


def _replace_atomically(path: Path, write) -> None:
    """``write(file)`` (a binary file object on a fresh temporary sibling of ``path``), then
    rename over ``path``: viewers never see half a file. Not
    fsynced: these are views of the run, remade at the next refresh. An OSError names
    ``path`` (``replacing``): Pillow's and matplotlib's own writes fail on a full disk naming
    no file."""
    with replacing(path, durable=False) as file:
        write(file)


def save_image(image: torch.Tensor, path: Path, aspect_ratio: float = 1.0) -> None:
    """``image`` (C x H x W in [-1, 1]) as a PNG; with ``aspect_ratio`` other than 1, resized
    as the reference's util.save_image does it (bicubic): above 1 to width H and height
    int(W * aspect_ratio), below 1 to width int(H / aspect_ratio) and height W (its sizes as
    written, so a square image gets taller with aspect_ratio > 1)."""
    from PIL import Image

    size = aspect_ratio_size(image.shape[-1], image.shape[-2], aspect_ratio)

    def write(file) -> None:
        picture = Image.fromarray(tensor_to_image(image))
        if picture.size != size:
            picture = picture.resize(size, Image.BICUBIC)
        picture.save(file, format="PNG")

    _replace_atomically(Path(path), write)


class LossLog:
    """Appends one row per loss read to ``loss_log.csv`` and keeps them for the plot.

    On resume the rows up to the resumed step are read back, so the curve continues; rows that
    do not parse (the partial last row a full disk or a power loss leaves) or hold NaN or Inf
    or a count outside [0, 2**63) (edited: fastp2p writes none) are left out, and
    ``say`` (print by default) is told how many in one line. A symbolic link or special file
    at the log's name raises ``fastp2p.atomic_files.NotAPlainFile`` (a ValueError).

    Rows past the resumed step (a resume from an older epoch discards the run that logged
    them) stay in the file until this run's first checkpoint is on disk (``discard_held``,
    called then): a resume that fails before it saves leaves the log of the run its
    ``latest_*`` still holds. Meanwhile the new rows are kept here, for the plot.

    ``set_aside``: this run's steps start again at 0 in a folder whose log may hold another
    run's rows (--continue_train of networks without a training state: a fastp2p run's whose
    state is gone); that file is kept whole, renamed to ``loss_log.N.csv`` (``kept_number``) as
    this run's first checkpoint is written (``set_aside_before_save``; said on ``say``), and
    this run's rows go to a new log (it was started anew: the rows were lost).

    A new run's log (neither ``resume_step`` nor ``set_aside``) that holds rows is that of a run
    that saved no checkpoint (stopped before its first save: a folder with checkpoints is
    refused without --overwrite, which removes the log): renamed at once to ``loss_log.N.csv``
    (no checkpoint of that run waits on this run's first save), said on ``say``; a rerun of
    the same command started the log anew, and its rows were lost.

    ``kept_number``: the ``KeptNumber`` that numbers the kept log (the first N free for it and
    for ``web/images.N/``), shared with the page's (one made here by default), so that one
    run's kept log and samples share their N.
    """

    def __init__(self, path: Path, resume_step=None, say=print, set_aside=False,
                 kept_number=None):
        self.path = Path(path)
        self._kept_number = kept_number or KeptNumber(self.path.parent)
        self.rows = []
        self.holding = False   # the file still holds the discarded run's later rows
        self._lock = threading.Lock()   # appends (the loop) against discard_held (the writer)
        self._say = say
        self._set_aside = set_aside and os.path.lexists(self.path)
        if self._set_aside:
            self.holding = True   # whole, until the first save: a failed resume leaves it
        elif resume_step is not None and self.path.exists():
            rows, damaged = _read_log_rows(self.path)
            self.rows = [row for row in rows if row["step"] <= resume_step]
            self.holding = len(self.rows) < len(rows)
            if damaged:
                say(f"warning: {self.path}: {damaged} damaged row(s) left out (they do not "
                    "parse, or hold NaN or Inf or a negative or huge count, which fastp2p never "
                    "writes); the log and the loss plot go on without them")
        elif resume_step is None and self.path.exists() and _holds_rows(self.path):
            say(f"{self.path} kept as {self._move_aside()}: it logs a run that saved no "
                "checkpoint (stopped before its first save); this run logs in a new "
                f"{self.path.name}")
        if not self.holding:
            self._rewrite()

    def _rewrite(self) -> None:
        """The file as ``rows`` (a header first), replaced atomically: a rewrite that fails (a
        full disk, mid-training from ``discard_held``) leaves the old file whole, never a
        truncated log. A link planted at the log's name is refused, as ``append`` refuses it
        (the rename would replace the link, never write through it)."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        refuse_unless_plain_file(self.path)
        replace_text(self.path, text.getvalue())

    def append(self, row: dict) -> None:
        row = {key: row[key] for key in LOG_FIELDS}
        with self._lock:
            self.rows.append(row)
            if self.holding:
                return
            with naming_the_file(self.path), open(self.path, "a", newline="",
                                                  opener=open_plain_file) as handle:
                csv.DictWriter(handle, LOG_FIELDS).writerow(row)

    def set_aside_before_save(self) -> None:
        """Just before this run's first checkpoint is written: the folder's log (``set_aside``)
        renamed aside, and this run's rows written as the new one. Before the save, not after:
        a kill between the two left the other run's rows in ``loss_log.csv`` beside this run's
        training state, which the next --continue_train read as its own rows and dropped; a
        save that fails now leaves them whole under their new name."""
        with self._lock:
            self._write_set_aside()

    def discard_held(self) -> None:
        """Once this run's first checkpoint is on disk: the file becomes this run's rows,
        without the discarded run's later ones (or the set-aside, where it failed before)."""
        with self._lock:
            self._write_set_aside()
            if self.holding:
                self._rewrite()
                self.holding = False

    def _write_set_aside(self) -> None:
        """A pending set-aside done: the file moved (said), then the new one written."""
        if not self._set_aside:
            return
        self._say(f"--continue_train: {self.path} kept as {self._move_aside()}: it logs the "
                  "steps before these networks, resumed without a training state, which count "
                  f"again from 0 in a new {self.path.name}")
        # moved: a rewrite that fails is tried again at the next save, the move not
        self._set_aside = False
        self._rewrite()
        self.holding = False

    def _move_aside(self) -> str:
        """The file renamed to ``loss_log.N.csv`` beside it (``KeptNumber``): that name."""
        return self._kept_number.move(self.path).name

    def frozen(self) -> "LossLog":
        """A copy whose rows stay as they are now, to plot on another thread while this one
        goes on appending."""
        view = copy.copy(self)
        with self._lock:
            view.rows = list(self.rows)
        return view

    def plot(self, path: Path, title: str) -> None:
        """The four losses against the training step (G_L1 on its own axis: it is ~100x)."""
        import matplotlib.pyplot as plt

        figure = self.figure(title)
        try:
            _replace_atomically(Path(path),
                                lambda file: figure.savefig(file, format="png", dpi=100))
        finally:
            plt.close(figure)   # pyplot keeps every figure open until closed, failed ones too

    def figure(self, title: str):
        """The loss plot as a matplotlib figure (close it with plt.close)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from matplotlib.ticker import MaxNLocator

        steps = np.array([int(row["step"]) for row in self.rows], dtype=np.int64)
        short = _short_windows(steps)
        figure, (gan_axis, l1_axis) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        self._draw(gan_axis, steps, short, [(name, name, None)
                                            for name in ("G_GAN", "D_real", "D_fake")])
        self._draw(l1_axis, steps, short, [("G_L1", "G_L1 (x lambda)", "tab:red")])
        gan_axis.set_ylabel("GAN losses")
        l1_axis.set_ylabel("L1 loss")
        l1_axis.set_xlabel("training step")
        l1_axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 1.5
        if len(set(steps)) == 1:
            # matplotlib's margin around a lone x is +-0.2: no whole step but that one to tick
            l1_axis.set_xlim(steps[0] - 1, steps[0] + 1)
        for axis in (gan_axis, l1_axis):
            # Outside the plotting area, to the right: inside, it covered the curves' ends
            # (where a diverging G_GAN climbs).
            axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
            axis.grid(alpha=0.3)
        # parse_math off: the run's name shows as typed ('$' would start mathtext, which
        # renders 'lr_$1e-3$_x' as "lr_1e − 3_x" and fails to draw 'a$^$b' at all)
        gan_axis.set_title(_readable_text(title), parse_math=False)
        _quiet_missing_glyphs()
        figure.tight_layout()
        return figure

    def _draw(self, axis, steps, short, series) -> None:
        """Each (loss name, label, colour or None: the next one) of ``series``: a line through
        the rows that average a whole window, and those that average a short one
        (``_short_windows``) as hollow points off the line: drawn into it, their noisier means
        showed as spikes."""
        # markers while the points are few: a line needs two, and one row (after one step, or
        # the last plot before a NaN stop) drew nothing
        points = {"marker": "o", "markersize": 4} if len(steps) <= _FEW_POINTS else {}
        for name, label, color in series:
            values = np.array([float(row[name]) for row in self.rows])
            line, = axis.plot(steps[~short], values[~short], label=label, color=color, **points)
            if short.any():
                axis.plot(steps[short], values[short], color=line.get_color(), **_HOLLOW)
        if short.any():
            axis.plot([], [], color="gray", label="fewer steps averaged", **_HOLLOW)


class KeptNumber:
    """The N that one earlier run's reports are kept under, ``loss_log.N.csv`` and
    ``web/images.N/`` in ``run_folder`` (beside the folder web/images links to, where it is your
    link: ``samples_folder``): the first N that neither name takes, found by the first of them
    kept and given to the other too, so that a person can pair them (each took its own first
    free N: after a run whose log alone was kept, under --no_html, as loss_log.1.csv, the next
    run's log went to loss_log.2.csv and its samples to images.1/)."""

    def __init__(self, run_folder: Path):
        self._run_folder = Path(run_folder)
        self.number = None   # the N claimed (or one an earlier process claimed for the run)

    def _names(self) -> tuple:
        """The names numbered: the loss log, web/images and the folder it links to (if any)."""
        images = self._run_folder / WEB / TrainingPage.IMAGES
        return self._run_folder / LOSS_LOG, images, samples_folder(images)

    def claim(self, path: Path, claim) -> Path:
        """``path``'s numbered name ``NAME.N.SUFFIX`` beside it, claimed by ``claim(name)``,
        which creates it exclusively (FileExistsError where anything is there): under the N
        the other name took, where this one is free, else under the first N from 1 that names
        nothing under either name (a check of each: only this one is claimed)."""
        if self.number is not None:
            with contextlib.suppress(FileExistsError):
                return _claimed(_numbered(path, self.number), claim)
        for number in itertools.count(1):
            if any(os.path.lexists(_numbered(name, number)) for name in self._names()):
                continue
            try:
                aside = _claimed(_numbered(path, number), claim)
            except FileExistsError:
                continue
            self.number = number
            return aside

    def unfinished(self, path: Path, mark: str) -> Path | None:
        """The numbered folder of ``path`` beside it that holds ``mark`` (a move into it that an
        earlier process began and did not finish), its N taken; None where none does."""
        numbers = sorted(number for name in path.parent.iterdir()
                         if (number := _number(name, path)) is not None)
        for number in numbers:
            folder = _numbered(path, number)
            if not folder.is_symlink() and os.path.lexists(folder / mark):
                self.number = number
                return folder
        return None

    def move(self, path: Path) -> Path:
        """``path`` (a file) renamed to its claimed numbered name (``claim``): that name. The
        rename replaces only the claim, an empty file made exclusively: a file something else
        makes there is never overwritten (a check, then a rename, overwrote one made in
        between), on any file system (a hard link, which also refuses a name taken, is not on
        all)."""
        aside = self.claim(path, partial(create_empty_file, exclusive=True))
        try:
            os.rename(path, aside)
        except BaseException:
            os.unlink(aside)   # the claim, empty: no name left behind
            raise
        return aside


def samples_folder(images: Path) -> Path:
    """``images`` (web/images), or the folder it links to where it is a symbolic link (your
    own: another user's is refused): the earlier runs' samples are kept in numbered folders
    beside that one, on the file system the user chose for samples (a rename into web/images.N/
    beside the link failed where that is another: EXDEV)."""
    return Path(os.path.realpath(images)) if images.is_symlink() else images


def _numbered(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.{number}{path.suffix}")


def _claimed(path: Path, claim) -> Path:
    claim(path)
    return path


def _is_numbered(path: Path, numbered_from: Path) -> bool:
    """Whether ``path`` is a name ``KeptNumber.claim(numbered_from, ...)`` gives."""
    return _number(path, numbered_from) is not None


def _number(path: Path, numbered_from: Path) -> int | None:
    """The N of ``path`` where it is a name ``KeptNumber.claim(numbered_from, ...)`` gives."""
    match = re.fullmatch(rf"{re.escape(numbered_from.stem)}\.([1-9][0-9]*)"
                         rf"{re.escape(numbered_from.suffix)}", path.name)
    return None if match is None else int(match[1])


def _readable_text(text: str) -> str:
    """``text`` with the bytes Python keeps as lone surrogates (a name from the command line or
    a file name, under a locale whose encoding is not UTF-8, or bytes that are not UTF-8)
    decoded as UTF-8 where they are (``né`` under ``LC_ALL=C PYTHONUTF8=0``), else shown as
    U+FFFD: matplotlib refuses a lone surrogate (a TypeError: no loss plot at all), and a UTF-8
    page cannot hold one."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (not from a name)
        return text.encode("utf-8", "replace").decode("utf-8")


def _quiet_missing_glyphs() -> None:
    """No warning for each letter of the run's name that the plot's font lacks (a CJK name
    under DejaVu Sans): the title shows a box for each, a cosmetic loss (the name is right in
    every other line and on the page), said by matplotlib as a raw UserWarning with a source
    line. Only for this module's drawing (the warning names the first frame outside
    matplotlib), so a caller's own plots keep theirs; a filter, not catch_warnings, which is not
    thread-safe (the plot is drawn on the report thread beside the training). Set at each plot:
    a caller may have reset the filters since."""
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font",
                            category=UserWarning, module=re.escape(__name__) + "$")


_FEW_POINTS = 50  # up to this many rows, the loss plot marks each
_HOLLOW = {"linestyle": "none", "marker": "o", "markersize": 4, "markerfacecolor": "none"}


def _short_windows(steps: np.ndarray) -> np.ndarray:
    """Whether each row averages fewer steps than a row beside it: rows are read every
    --log-every steps (at its multiples) and at each epoch's end, so where --log-every does not
    divide the epoch, the epoch's last row and the next one's first average what is left (a
    resume in the middle of a window goes on with its saved loss sums: its first row averages
    the whole window)."""
    windows = np.diff(steps, prepend=0)
    before = np.concatenate([windows[:1], windows[:-1]])
    after = np.concatenate([windows[1:], windows[-1:]])
    return windows < np.maximum(before, after)


def _read_log_rows(path: Path):
    """(rows of ``path`` as numbers, how many rows did not parse): a row must hold exactly the
    header's number of values and a finite number in each of LOG_FIELDS."""
    with open_to_read(path, "r", newline="", encoding="utf-8", errors="replace") as handle:
        lines = _log_lines(handle)
        header = _csv_values(next(lines, None))
        rows, damaged = [], 0
        for line in lines:
            values = _csv_values(line)
            if values == []:    # a blank line holds no row
                continue
            try:
                if header is None or values is None or len(values) != len(header):
                    raise ValueError("not a row")
                rows.append(_log_row(dict(zip(header, values))))
            except (KeyError, ValueError):
                damaged += 1
    return rows, damaged


def _holds_rows(path: Path) -> bool:
    """Whether the log at ``path`` (NotAPlainFile where it is not a plain file) holds a row
    past its header, a damaged one too."""
    refuse_unless_plain_file(path)
    rows, damaged = _read_log_rows(path)
    return bool(rows) or damaged > 0


def _log_row(named: dict) -> dict:
    """LOG_FIELDS of one parsed CSV row (``named``: header -> text) as numbers; ValueError for
    values fastp2p never writes: NaN or Inf (a NaN loss stops training first), which would set
    the loss plot's scale (matplotlib's overflow warning), or a count that is negative or past
    int64, which made every loss plot of the resumed run fail (numpy's OverflowError)."""
    row = {key: (int if key in _COUNTS else float)(named[key]) for key in LOG_FIELDS}
    if not all(math.isfinite(value) for value in row.values()):
        raise ValueError("NaN or Inf")
    if not all(0 <= row[key] < 2 ** 63 for key in _COUNTS):
        raise ValueError("a count out of range")
    return row


_COUNTS = ("epoch", "step", "images")  # the LOG_FIELDS that are whole numbers
# The longest line read as one: a row fastp2p writes (nine numbers) is under 300 characters.
# A longer line (a sparse or foreign file, no newline for gigabytes) is a damaged row, read
# through a piece at a time: read whole, a sparse 3 GB log was a MemoryError traceback.
_LONGEST_LINE = 1 << 12
_LINE_ENDS = ("\n", "\r")


def _log_lines(handle):
    """The lines of ``handle`` (opened with newline=""), without their ends; None for each one
    longer than _LONGEST_LINE, which is not kept in memory."""
    while True:
        line = handle.readline(_LONGEST_LINE)
        if not line:
            return
        if line.endswith(_LINE_ENDS) or len(line) < _LONGEST_LINE:   # whole (or the last)
            yield line.rstrip("\r\n")
            continue
        while line and not line.endswith(_LINE_ENDS):   # the rest of the overlong line
            line = handle.readline(_LONGEST_LINE)
        yield None


def _csv_values(line: str | None):
    """The values of one CSV line; None if it does not parse (a NUL byte, an open quote) or is
    None (none, or an overlong one)."""
    if line is None:
        return None
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None


def write_html(path: Path, title: str, sections, loss_plot=None, refresh_s=None) -> None:
    """A page with an optional loss plot and rows of labelled image triplets.

    ``sections``: (heading, [(label, relative image path), ...]) pairs, shown in that order.
    Image paths are file paths ('/'-separated), not URLs: they are URL-quoted here, so a file
    named ``a#1.png``, ``k?.png`` or ``c%20d.png`` is the file the browser loads.
    """
    lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>{_text(title)}</title>"]
    if refresh_s:
        lines.append(f"<meta http-equiv='refresh' content='{int(refresh_s)}'>")
    lines += ["<style>body{font-family:sans-serif} td{padding:4px;text-align:center}"
              " img{width:256px;image-rendering:pixelated}</style></head><body>",
              f"<h1>{_text(title)}</h1>"]
    if loss_plot:
        lines.append(f"<h2>Losses</h2><img src='{_url(loss_plot)}' "
                     "style='width:800px'>")
    for heading, images in sections:
        lines.append(f"<h3>{_text(heading)}</h3><table><tr>")
        for label, source in images:
            # lazy: a browser loads the images scrolled to, not a 300-row page's 600 at once
            lines.append(f"<td><img src='{_url(source)}' loading='lazy'><br>"
                         f"{_text(label)}</td>")
        lines.append("</tr></table>")
    lines.append("</body></html>")
    _replace_atomically(Path(path), lambda file: file.write("\n".join(lines).encode("utf-8")))


def _url(relative_path) -> str:
    """A relative file path as an HTML attribute value: URL-quoted (#, ?, % and non-ASCII
    characters would otherwise end or change the path the browser asks for), then escaped. The
    path's own bytes are quoted (os.fsencode), so a file name that is not valid UTF-8 links to
    that file."""
    return html.escape(quote(os.fsencode(str(relative_path))))


def _text(value: str) -> str:
    """``value`` as HTML text, its lone surrogates made ``_readable_text``."""
    return html.escape(_readable_text(value))


class TrainingPage:
    """``CHECKPOINTS/NAME/web``: sample triplets, the loss plot and index.html, newest first."""
    IMAGES, INDEX, PLOT = "images", "index.html", "loss.png"
    # add_sample's names: epoch, step, label
    SAMPLE = re.compile(rf"^epoch(\d+)_step(\d+)_({'|'.join(TRIPLET)})\.png$")
    # a resumed run's samples until its first save (hidden: no SAMPLE name, so never the kept
    # run's; see __init__)
    STAGED = ".staged-"
    # in an images.N/ while _keep_samples moves samples into it: a kill's retry goes on there
    UNFINISHED = ".unfinished-move"
    # _keep_samples' lines: a new run's (at once), a --continue_train's set_aside (at its save)
    KEPT_UNSAVED = ("{images}: the {count} sample image(s) of a run that saved no checkpoint "
                    "(stopped before its first save) kept in {kept}; this run's samples go to "
                    "{images.name}/")
    KEPT_SET_ASIDE = ("--continue_train: the {count} sample image(s) in {images} kept in {kept}: "
                      "they show the steps before these networks, resumed without a training "
                      "state, whose samples count again from 0 in {images.name}/")

    def __init__(self, folder: Path, name: str, resume_step=None, say=print, set_aside=False,
                 kept_number=None, staged=None):
        """``resume_step``: on a resume, the step resumed at; the samples of later steps are the
        discarded run's, as the loss log's rows of those steps (LossLog leaves them out). They
        stay on disk, unlisted, until ``delete_discarded_samples`` (once this run's first save
        is on disk): a resume that fails before it saves leaves them to the run that
        ``latest_*`` still holds. Meanwhile this run's samples are staged (``STAGED``), so
        none replaces a file of that run. Staged files found here are deleted, unless the
        resumed save recorded them (``staged``): a resume that failed before it saved left them,
        and they belong to no saved run.

        A new run's page (neither ``resume_step`` nor ``set_aside``, as LossLog's) in a folder
        that holds samples is that of a run that saved no checkpoint (a folder with checkpoints
        is refused without --overwrite, which removes the samples): they are moved at once
        into ``images.N/`` beside ``images/`` or the folder it links to (``_keep_samples``,
        ``samples_folder``), as its loss log
        is kept as ``loss_log.N.csv``, the same N (``KeptNumber``); this run's steps count
        from 0 again, and its samples replaced theirs of the same names. Said on ``say``. A
        move that fails (OSError) is one warning line on ``say``, and the page goes on as with
        ``set_aside``: their samples stay, unlisted, and are moved before each save until one
        move succeeds; this run's are staged until then.

        With ``set_aside`` (a resume without a training state, LossLog's: its steps count from
        0 again, after another run's) the samples there are that run's: unlisted, and moved
        into ``images.N/`` just before this run's first save (``set_aside_before_save``), as
        the loss log is set aside; this run's are staged until then, so a kill at any point
        leaves each of theirs whole. ``kept_number``: LossLog's.

        The run that saves owns its staged files: each save records them (``staged_record``,
        in the training state), and ``staged`` is that record of the save resumed. A move that
        fails at every save leaves this run's samples staged beside its checkpoints; the next
        --continue_train deleted them at its start, then the other run's past its step. With
        ``staged`` the staged files are the resumed run's: kept, those up to ``resume_step``
        listed; the plain ones, where the record says so, are still the other run's, moved at
        a save; the staged ones are renamed into place once nothing of another run holds
        their names and a save whose state records that is on disk (a kill before it leaves
        them staged, as that state says). Until then this run writes no sample (it would
        replace the resumed run's of its steps: those past ``resume_step``, which its first
        save discards).

        So no kill or failure loses a sample of either run: a file under a plain name is
        deleted only as a discarded run's, once this run's save is on disk, and never while
        those names are another run's to set aside; a staged one only at a start whose save
        does not record it (or as a discarded run's); a rename replaces no file but a
        discarded run's. (Not covered: a state without the record whose run left staged
        samples, its file deleted by hand, or a resume of a set saved before that run's:
        those are deleted at the start, as a failed resume's.)"""
        self.folder = Path(folder)
        self.images = self.folder / self.IMAGES
        for made in (self.folder, self.images):
            refuse_linked_folder(made)   # before mkdir, which would make a folder it points at
        self.images.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._kept_number = kept_number or KeptNumber(self.folder.parent)
        self.index = self.folder / self.INDEX
        self.loss_plot = self.folder / self.PLOT
        self._say = say
        self._kept, self._kept_count = None, 0   # _keep_samples' folder and how many it holds
        # the plain samples there are another run's until set_aside_before_save moved them
        self.setting_aside = set_aside or bool(staged and staged["set_aside_owed"])
        # None once the discarded run's samples are gone (plain ones; with _held_after, staged)
        self.discarded_after = resume_step
        # the staged files there may take their own names once nothing is set aside
        self._unstaging = staged is not None
        # whether the training state on disk records the staged files (the next start keeps
        # them), and whether the save being written does (staged_record): until then
        self._staged_saved, self._staged_in_save = staged is not None, None
        # the resumed run's staged files past this step are discarded: none is written meanwhile
        self._held_after = resume_step if staged is not None else None
        self._kept_line = self.KEPT_SET_ASIDE if set_aside else self.KEPT_UNSAVED
        if staged is not None and staged["kept_number"] is not None:
            self._kept_number.number = staged["kept_number"]
        if staged is None:
            for path, *_ in list(self._sample_files(staged=True)):
                _unlink_file(path)
        else:
            self._say(f"--continue_train: {self.images} holds the resumed run's samples, "
                      f"staged as {self.STAGED}*: they are renamed into place at this run's "
                      "first save where they can be, and this run writes no sample image until "
                      "then")
        if resume_step is None and not set_aside:
            self._keep_unsaved_runs_samples()

    def _keep_unsaved_runs_samples(self) -> None:
        """A new run's ``_keep_samples``; where it fails, said in one line, and tried again
        before each save as a set-aside's (the samples left in images/ are another run's)."""
        try:
            self._keep_samples()
        except OSError as err:
            from fastp2p.train.checkpoints import describe_os_error

            self._say(f"warning: the sample images of a run that saved no checkpoint in "
                      f"{self.images} were not moved aside ({describe_os_error(err)}); they "
                      "stay there, moved at each save until that works, and this run's are "
                      f"written as {self.STAGED}* until then")
            self.setting_aside = True

    def _keep_samples(self) -> None:
        """The samples in images/ moved into ``images.N/`` (``KeptNumber``; made here: a folder
        of that name is never written into) beside it, or beside the folder it links to
        (``samples_folder``), and ``_kept_line`` said, formatted with ``images`` (images/),
        ``count`` and ``kept`` (where they went); the user's other files stay. A move that
        failed or was killed part-way is taken up again into the same ``images.N/`` (a new one
        split one run's samples over two numbers): by this process, or by the next from the mark
        (``UNFINISHED``) the folder holds from its making to the move's end (its N taken for
        the loss log too)."""
        linked = samples_folder(self.images)
        if self._kept is None:
            self._kept = self._kept_number.unfinished(linked, self.UNFINISHED)
            self._kept_count = 0 if self._kept is None else sum(
                1 for path in self._kept.iterdir() if self.SAMPLE.match(path.name))
        samples = [path for path, *_ in self._sample_files()]
        if self._kept is None:
            if not samples:
                return
            self._kept = self._kept_number.claim(linked, _make_marked_folder)
        try:
            for path in samples:
                os.rename(path, self._kept / path.name)
                self._kept_count += 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._kept / self.UNFINISHED)
        except OSError:
            if not self._kept_count:   # none moved: its N stays the loss log's to pair
                with contextlib.suppress(OSError):
                    os.unlink(self._kept / self.UNFINISHED)
                _remove_if_empty(self._kept)
                self._kept = None
            raise
        where = (f"{self._kept.name}/ beside it" if linked == self.images
                 else f"{self._kept}/ beside {linked}, the folder it links to")
        self._say(self._kept_line.format(images=self.images, count=self._kept_count, kept=where))

    @property
    def waiting_before_save(self) -> bool:
        """Whether ``set_aside_before_save`` has something to do."""
        return self.setting_aside or (self._unstaging and not self._staged_saved)

    @property
    def waiting_after_save(self) -> bool:
        """Whether ``delete_discarded_samples`` has something to do."""
        return self.discarded_after is not None or self.setting_aside or self._unstaging

    def staged_record(self):
        """What a save records of the staged files there (``staged`` of the resume): None
        where there are none, else whether the plain ones are still another run's to set aside
        and ``KeptNumber``'s N.
        Taken on the thread that writes the samples, just before the save is written."""
        try:
            staged = any(self._sample_files(staged=True))
        except OSError:   # unread, they may be there: kept, not deleted
            staged = True
        self._staged_in_save = staged
        if not staged:
            return None
        # the N its loss log took, if any, which the other run's samples are to pair with
        return {"set_aside_owed": self.setting_aside, "kept_number": self._kept_number.number}

    def set_aside_before_save(self) -> None:
        """With ``set_aside`` (or a new run's move that failed, or a resumed run's that failed),
        just before this run's checkpoint is written (as LossLog's ``set_aside_before_save``):
        the samples there moved into ``images.N/``, then, where no training state on disk
        records the staged ones, those renamed into their place (refresh the page after).
        The move before the save, not after: a kill between the two left them in images/ beside
        this run's training state, and the next --continue_train, resuming it, deleted those of
        the steps past its own as a discarded run's. The renames before it only where no state
        records the staged files: the next start would delete them (under their own names it
        keeps them, as a run's that saved nothing); where a state records them, and that the
        move is owed, a kill before this save is on disk left them under their own names beside
        that state, and the next --continue_train filed them into ``images.N/`` as the other
        run's: they are renamed once it is on disk (``delete_discarded_samples``). One that
        fails midway leaves each whole, in images/ or images.N/, and is tried again at the next
        save, as the renames are. Call it on the thread that writes the samples."""
        if self.setting_aside:
            self._keep_samples()
            self.setting_aside = False
            self._unstaging = True
        if not self._staged_saved:
            self._unstage()

    def _sample_files(self, staged: bool = False):
        """(path, epoch, step, label) of each file in images/ that add_sample names so (with
        ``staged``: of each it staged, named ``STAGED`` + that name)."""
        prefix = self.STAGED if staged else ""
        for path in self.images.iterdir():
            match = path.name.startswith(prefix) and self.SAMPLE.match(path.name[len(prefix):])
            if match:
                yield path, int(match[1]), int(match[2]), match[3]

    def _discarded(self, step: int) -> bool:
        """Whether the sample of ``step`` under its own name is the discarded run's (this
        run's of that step is staged meanwhile)."""
        return self.discarded_after is not None and step > self.discarded_after

    def _held(self, step: int) -> bool:
        """Whether the staged sample of ``step`` is the resumed run's, discarded (``staged``)."""
        return self._held_after is not None and step > self._held_after

    def delete_discarded_samples(self) -> None:
        """Once a save of this run is on disk (``waiting_after_save``): after the first, the
        discarded run's samples (``_discarded``; the resumed run's staged ones past its step,
        ``_held``), and after each, the staged ones renamed into their place (refresh the page
        after). Deleted,
        not moved aside: the loss log's rows of those steps are gone too (and the checkpoints
        are overwritten), and a folder set aside at each such resume would pile up and clash
        in names. Call it on the thread that writes the samples, so that none is written
        meanwhile. Never those ``set_aside_before_save`` is to keep (where it failed)."""
        if self._staged_in_save is not None:   # that save's state records them, or not
            self._staged_saved, self._staged_in_save = self._staged_in_save, None
        if self.discarded_after is not None:
            plain = [] if self.setting_aside else self._sample_files()
            staged = self._sample_files(staged=True) if self._held_after is not None else []
            for path, _, step, _ in list(itertools.chain(plain, staged)):
                if step > self.discarded_after:
                    _unlink_file(path)
            # the staged ones are this run's now: renamed into place once nothing is set aside
            self.discarded_after = self._held_after = None
            self._unstaging = True
        self._unstage()

    def _unstage(self) -> None:
        """The staged samples renamed into their place, where nothing there is another run's
        to set aside; one that fails part-way is tried again (``set_aside_before_save``)."""
        if not self._unstaging or self.setting_aside:
            return
        for path, *_ in list(self._sample_files(staged=True)):
            os.replace(path, path.with_name(path.name[len(self.STAGED):]))
        self._unstaging = False
        self._held_after = None

    def add_sample(self, epoch: int, step: int, triplet) -> None:
        """The triplet of ``step`` in images/, staged while the names there are another run's
        (``setting_aside``) or the discarded run's (``_discarded``); none while the resumed
        run's staged ones wait (``staged``)."""
        if self._held_after is not None:
            return
        staged = self.STAGED if self.setting_aside or self._discarded(step) else ""
        for label, batch in zip(TRIPLET, triplet):
            save_image(batch[0],
                       self.images / f"{staged}epoch{epoch:03d}_step{step:07d}_{label}.png")

    def _listed_samples(self):
        """(epoch, step, name stem) of the triplets the page lists: the samples on disk but
        the discarded run's and another run's to set aside, and the staged ones but the
        resumed run's discarded (their stems keep the prefix: the files' names)."""
        for staged in (False, True):
            for path, epoch, step, label in self._sample_files(staged):
                listed = (not self._held(step) if staged
                          else not (self.setting_aside or self._discarded(step)))
                if label == TRIPLET[0] and listed:
                    yield epoch, step, path.name.rsplit("_", 2)[0]

    def refresh(self, loss_log: LossLog | None) -> None:
        """The loss plot (none without ``loss_log``), then index.html; a plot that cannot be
        drawn does not keep the page from being written (with the last plot drawn, if any): its
        error is raised after."""
        plot_error = None
        if loss_log is not None and loss_log.rows:
            try:
                loss_log.plot(self.loss_plot, f"{self.name}: losses")
            except Exception as err:  # noqa: BLE001 - raised again once the page is written
                plot_error = err
        # newest first by the numbers, not the names: 'epoch999' sorts above 'epoch1000' as text
        samples = sorted(self._listed_samples(), reverse=True)
        sections = [(stem.removeprefix(self.STAGED).replace("_", ", "),
                     [(label, f"images/{stem}_{label}.png") for label in TRIPLET])
                    for _, _, stem in samples]
        write_html(self.index, f"fastp2p training: {self.name}", sections,
                   loss_plot="loss.png" if self.loss_plot.exists() else None, refresh_s=60)
        if plot_error is not None:
            raise plot_error


def _make_marked_folder(folder: Path) -> None:
    """``folder`` made (FileExistsError where anything is there) holding the mark of a move
    into it (``TrainingPage.UNFINISHED``), or not at all."""
    os.mkdir(folder)
    try:
        create_empty_file(folder / TrainingPage.UNFINISHED, exclusive=True)
    except BaseException:
        os.rmdir(folder)
        raise


def _unlink_file(path: Path) -> None:
    """Remove ``path`` if it is a file or a symbolic link (a folder of that name is someone's
    own: fastp2p writes none)."""
    if path.is_file() or path.is_symlink():
        path.unlink()


def refuse_planted_links(run_folder: Path, web: bool, overwrite: bool) -> None:
    """NotAPlainFile, before a run changes anything in ``run_folder`` (--overwrite's removals,
    train_opt.txt), if what it writes later would be refused there: a loss log that is not a
    plain file (with ``overwrite``, a symbolic link there is fine: ``remove_reports`` unlinks it,
    never its target; a folder or FIFO it cannot remove is not), or (with the web page) a web/ or
    web/images that is a symbolic link."""
    log = Path(run_folder) / LOSS_LOG
    if not (overwrite and log.is_symlink()):
        refuse_unless_plain_file(log)
    if web:
        for folder in (Path(run_folder) / WEB, Path(run_folder) / WEB / TrainingPage.IMAGES):
            refuse_linked_folder(folder)


def _written_in(folder: Path) -> bool:
    """Whether fastp2p writes in ``folder``: a plain folder, or your own link to one (another
    user's link, or a link to nothing, it refuses: ``refuse_linked_folder``)."""
    try:
        refuse_linked_folder(folder)
    except ValueError:
        return False
    return True


def remove_reports(run_folder: Path) -> None:
    """--overwrite: the previous run's loss log and those LossLog set aside
    (``loss_log.N.csv``), and its web page, loss plot and sample images, those TrainingPage
    kept in ``images.N/`` too, beside web/images and beside the folder it links to (the names
    this module writes; nothing else in the folder; an ``images.N/`` left empty is removed).
    Under a web/ or web/images that is your own symbolic link too (the page is written there),
    never under another user's."""
    web = Path(run_folder) / WEB
    images = web / TrainingPage.IMAGES
    log = Path(run_folder) / LOSS_LOG
    paths = [log, *(path for path in log.parent.iterdir() if _is_numbered(path, log))]
    kept = []
    if _written_in(web):
        paths += [web / TrainingPage.PLOT, web / TrainingPage.INDEX]
        kept = _kept_sample_folders(images)
        for folder in [images, *kept]:
            if folder.is_dir() and _written_in(folder):
                paths += [path for path in folder.iterdir() if TrainingPage.SAMPLE.match(
                    path.name.removeprefix(TrainingPage.STAGED))
                    or path.name == TrainingPage.UNFINISHED]
    for path in paths:
        _unlink_file(path)
    for folder in kept:
        _remove_if_empty(folder)


def _kept_sample_folders(images: Path) -> list:
    """The ``images.N`` beside web/images, and beside the folder it links to where it is your
    own link (``samples_folder``: TrainingPage keeps them there)."""
    besides = {images, samples_folder(images) if _written_in(images) else images}
    return sorted({path for beside in besides if beside.parent.is_dir()
                   for path in beside.parent.iterdir() if _is_numbered(path, beside)})


def _remove_if_empty(folder: Path) -> None:
    """``folder`` removed unless it holds something (the user's own files stay, in it) or is
    not a folder (a link: the folder it points at is left as it is)."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)
