"""loss_log.csv in the run folder: one row per loss read, appended as training goes, read back
on a resume (its damaged rows left out), and the log of an earlier run kept aside as
``loss_log.N.csv`` (``kept_runs``); the rows are kept for the loss plot (``loss_plot``)."""
import copy
import csv
import io
import math
import os
import threading
from pathlib import Path

from fastp2p.atomic_files import (naming_the_file, open_plain_file, refuse_unless_plain_file,
                                  replace_text)
from fastp2p.file_reads import open_to_read
from fastp2p.train.engine import LOSS_NAMES
from fastp2p.train.kept_runs import KeptNumber
from fastp2p.train.loss_plot import loss_figure, save_loss_plot

LOG_FIELDS = ("epoch", "step", "images", "lr", *LOSS_NAMES, "images_per_s")


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
        """The four losses against the training step (``loss_plot.save_loss_plot``)."""
        save_loss_plot(self.rows, path, title)

    def figure(self, title: str):
        """The loss plot as a matplotlib figure (close it with plt.close)."""
        return loss_figure(self.rows, title)


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

