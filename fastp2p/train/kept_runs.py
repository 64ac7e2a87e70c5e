"""The numbering of an earlier run's reports kept beside this run's: ``loss_log.N.csv`` and
``web/images.N/`` (``KeptNumber``), the folder the samples are kept beside (``samples_folder``),
and which names are such numbered ones (``is_numbered``)."""
import contextlib
import itertools
import os
import re
from functools import partial
from pathlib import Path

from fastp2p.atomic_files import create_empty_file
from fastp2p.train.report_names import IMAGES, LOSS_LOG, UNFINISHED_MOVE, WEB
from fastp2p.train.sample_images import SAMPLE_NAME


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
        images = self._run_folder / WEB / IMAGES
        return self._run_folder / LOSS_LOG, images, samples_folder(images)

    def claim(self, path: Path, claim) -> Path:
        """``path``'s numbered name ``NAME.N.SUFFIX`` beside it, claimed by ``claim(name)``,
        which creates it exclusively (FileExistsError where anything is there): under the N
        the other name took, where this one is free, else under the first N from 1 that names
        nothing under either name (a check of each: only this one is claimed)."""
        if self.number is not None:
            with contextlib.suppress(FileExistsError):
                return _claimed(numbered(path, self.number), claim)
        for number in itertools.count(1):
            if any(os.path.lexists(numbered(name, number)) for name in self._names()):
                continue
            try:
                aside = _claimed(numbered(path, number), claim)
            except FileExistsError:
                continue
            self.number = number
            return aside

    def unfinished(self, path: Path) -> Path | None:
        """The numbered folder of ``path`` beside it that holds the mark ``UNFINISHED_MOVE`` (a
        move into it that an earlier process began and did not finish), its N taken; None where
        none does."""
        numbers = sorted(number for name in path.parent.iterdir()
                         if (number := _number(name, path)) is not None)
        for number in numbers:
            folder = numbered(path, number)
            if not folder.is_symlink() and os.path.lexists(folder / UNFINISHED_MOVE):
                self.number = number
                return folder
        return None

    def move(self, path: Path) -> Path:
        """``path`` (a file) renamed to its claimed numbered name (``claim``): that name. The
        rename replaces only the claim, an empty file made exclusively: a file something else
        makes there is never overwritten (a check, then a rename, overwrote one made in
        between), on any file system (a hard link, which also refuses a name taken, is not on
        all). Where no N is claimed yet, a move of samples an earlier process began and did not
        finish gives its N (the log a set-aside keeps before the samples pairs with them); its
        mark is removed once the log is kept where no sample is left in web/images to move."""
        _, images, samples = self._names()
        unfinished = (self.unfinished(samples)
                      if self.number is None and samples.parent.is_dir() else None)
        aside = self.claim(path, partial(create_empty_file, exclusive=True))
        try:
            os.rename(path, aside)
        except BaseException:
            os.unlink(aside)   # the claim, empty: no name left behind
            raise
        if unfinished is not None and not _holds_sample(images):
            # the move's end: no page (--no_html) does it, and the next page's took the mark
            # for a move still to do and said the samples moved earlier were kept again
            unmark(unfinished)
        return aside


def unmark(folder: Path) -> None:
    """The mark ``UNFINISHED_MOVE`` removed from ``folder`` (an ``images.N/``): its move is
    done."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / UNFINISHED_MOVE)


def _holds_sample(images: Path) -> bool:
    """Whether ``images`` (web/images) holds a sample image under its own name."""
    return images.is_dir() and any(SAMPLE_NAME.match(path.name) for path in images.iterdir())


def samples_folder(images: Path) -> Path:
    """``images`` (web/images), or the folder it links to where it is a symbolic link (your
    own: another user's is refused): the earlier runs' samples are kept in numbered folders
    beside that one, on the file system the user chose for samples (a rename into web/images.N/
    beside the link failed where that is another: EXDEV)."""
    return Path(os.path.realpath(images)) if images.is_symlink() else images


def numbered(path: Path, number: int) -> Path:
    """``path``'s name numbered N: ``NAME.N.SUFFIX`` beside it."""
    return path.with_name(f"{path.stem}.{number}{path.suffix}")


def _claimed(path: Path, claim) -> Path:
    claim(path)
    return path


def is_numbered(path: Path, numbered_from: Path) -> bool:
    """Whether ``path`` is a name ``KeptNumber.claim(numbered_from, ...)`` gives."""
    return _number(path, numbered_from) is not None


def _number(path: Path, numbered_from: Path) -> int | None:
    """The N of ``path`` where it is a name ``KeptNumber.claim(numbered_from, ...)`` gives."""
    match = re.fullmatch(rf"{re.escape(numbered_from.stem)}\.([1-9][0-9]*)"
                         rf"{re.escape(numbered_from.suffix)}", path.name)
    return None if match is None else int(match[1])
