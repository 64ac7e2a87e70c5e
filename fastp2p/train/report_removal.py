"""A run's reports in its folder before a run writes them: links planted where they would be
written refused (``refuse_planted_links``), and with --overwrite the previous run's removed
(``remove_reports``)."""
from pathlib import Path

from fastp2p.atomic_files import refuse_linked_folder, refuse_unless_plain_file
from fastp2p.train.kept_runs import is_numbered, samples_folder
from fastp2p.train.report_files import remove_if_empty, unlink_file
from fastp2p.train.report_names import IMAGES, LOSS_LOG, WEB
from fastp2p.train.training_page import TrainingPage


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
        for folder in (Path(run_folder) / WEB, Path(run_folder) / WEB / IMAGES):
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
    LossLog and TrainingPage write; nothing else in the folder; an ``images.N/`` left empty is
    removed).
    Under a web/ or web/images that is your own symbolic link too (the page is written there),
    never under another user's."""
    web = Path(run_folder) / WEB
    images = web / IMAGES
    log = Path(run_folder) / LOSS_LOG
    paths = [log, *(path for path in log.parent.iterdir() if is_numbered(path, log))]
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
        unlink_file(path)
    for folder in kept:
        remove_if_empty(folder)


def _kept_sample_folders(images: Path) -> list:
    """The ``images.N`` beside web/images, and beside the folder it links to where it is your
    own link (``samples_folder``: TrainingPage keeps them there)."""
    besides = {images, samples_folder(images) if _written_in(images) else images}
    return sorted({path for beside in besides if beside.parent.is_dir()
                   for path in beside.parent.iterdir() if is_numbered(path, beside)})
