"""The loss plot: the four losses of the loss log's rows against the training step, drawn with
matplotlib's Agg backend (no display needed) and replaced atomically (``report_files``)."""
import re
import warnings
from pathlib import Path

import numpy as np

from fastp2p.train.readable_text import readable_text
from fastp2p.train.report_files import replace_atomically

_FEW_POINTS = 50  # up to this many rows, the loss plot marks each
_HOLLOW = {"linestyle": "none", "marker": "o", "markersize": 4, "markerfacecolor": "none"}


def save_loss_plot(rows, path: Path, title: str) -> None:
    """The plot of ``rows`` (``loss_figure``) as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    figure = loss_figure(rows, title)
    try:
        replace_atomically(Path(path),
                           lambda file: figure.savefig(file, format="png", dpi=100))
    finally:
        plt.close(figure)   # pyplot keeps every figure open until closed, failed ones too


def loss_figure(rows, title: str):
    """The four losses of ``rows`` (the loss log's) against the training step (G_L1 on its own
    axis: it is ~100x) as a matplotlib figure (close it with plt.close)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    steps = np.array([int(row["step"]) for row in rows], dtype=np.int64)
    short = _short_windows(steps)
    figure, (gan_axis, l1_axis) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    _draw(gan_axis, rows, steps, short, [(name, name, None)
                                         for name in ("G_GAN", "D_real", "D_fake")])
    _draw(l1_axis, rows, steps, short, [("G_L1", "G_L1 (x lambda)", "tab:red")])
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
    gan_axis.set_title(readable_text(title), parse_math=False)
    _quiet_missing_glyphs()
    figure.tight_layout()
    return figure


def _draw(axis, rows, steps, short, series) -> None:
    """Each (loss name, label, colour or None: the next one) of ``series``: a line through
    the rows that average a whole window, and those that average a short one
    (``_short_windows``) as hollow points off the line: drawn into it, their noisier means
    showed as spikes."""
    # markers while the points are few: a line needs two, and one row (after one step, or
    # the last plot before a NaN stop) drew nothing
    points = {"marker": "o", "markersize": 4} if len(steps) <= _FEW_POINTS else {}
    for name, label, color in series:
        values = np.array([float(row[name]) for row in rows])
        line, = axis.plot(steps[~short], values[~short], label=label, color=color, **points)
        if short.any():
            axis.plot(steps[short], values[short], color=line.get_color(), **_HOLLOW)
    if short.any():
        axis.plot([], [], color="gray", label="fewer steps averaged", **_HOLLOW)


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
