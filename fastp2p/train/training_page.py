"""The training page, ``CHECKPOINTS/NAME/web``: the sample triplets written as training goes,
the loss plot and index.html; on a resume or a new run in a used folder, the earlier run's
samples kept apart (``kept_runs``), staged or deleted so that no kill or failure loses one."""
import itertools
import os
from pathlib import Path

from fastp2p.atomic_files import create_empty_file, refuse_linked_folder
from fastp2p.train.html_page import write_html
from fastp2p.train.kept_runs import KeptNumber, numbered, samples_folder, unmark
from fastp2p.train.loss_log import LossLog
from fastp2p.train.report_files import unlink_file
from fastp2p.train.report_names import IMAGES, UNFINISHED_MOVE
from fastp2p.train.sample_images import SAMPLE_NAME, TRIPLET, save_image

# the training state's key for TrainingPage.staged_record: that save's run's samples are staged
STAGED_RECORD = "staged_samples"


class TrainingPage:
    """``CHECKPOINTS/NAME/web``: sample triplets, the loss plot and index.html, newest first."""
    INDEX, PLOT = "index.html", "loss.png"
    # add_sample's names: epoch, step, label
    SAMPLE = SAMPLE_NAME
    # a resumed run's samples until its first save (hidden: no SAMPLE name, so never the kept
    # run's; see __init__)
    STAGED = ".staged-"
    # in an images.N/ while _keep_samples moves samples into it: a kill's retry goes on there
    UNFINISHED = UNFINISHED_MOVE
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
        is kept as ``loss_log.N.csv``, the same N (``KeptNumber``; the folder's mark stays
        until ``log_kept``); this run's steps count
        from 0 again, and its samples replaced theirs of the same names. Said on ``say``. A
        move that fails (OSError) is one warning line on ``say``, and the page goes on as with
        ``set_aside``: their samples stay, unlisted, and are moved before each save until one
        move succeeds; this run's are staged until then.

        With ``set_aside`` (a resume without a training state, LossLog's: its steps count from
        0 again, after another run's) the samples there are that run's: unlisted, and moved
        into ``images.N/`` just before this run's first save (``set_aside_before_save``), as
        the loss log is set aside, under the N of the folder claimed before it
        (``claim_before_save``); this run's are staged until then, so a kill at any point
        leaves each of theirs whole. ``kept_number``: LossLog's.

        The run that saves owns its staged files: each save records them (``staged_record``,
        in the training state), and ``staged`` is that record of the save resumed. A move that
        fails at every save leaves this run's samples staged beside its checkpoints; the next
        --continue_train deleted them at its start, then the other run's past its step. With
        ``staged`` the staged files are the resumed run's: kept, those up to ``resume_step``
        listed; the plain ones, where the record says so, are still the other run's, moved at
        a save (unless the record's ``images.N/`` holds a later save's whole move: ``_moved``,
        and the plain ones are the resumed run's, renamed into place since); the staged ones
        are renamed into place once nothing of another run holds their names and a save whose
        state records that is on disk (a kill before it leaves them staged, as that state
        says). Until then this run writes no sample (it would
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
        self.images = self.folder / IMAGES
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
        self.setting_aside = set_aside or bool(staged and staged["set_aside_owed"]
                                               and not self._moved(staged["kept_number"]))
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
                unlink_file(path)
        else:
            self._say(f"--continue_train: {self.images} holds the resumed run's samples, "
                      f"staged as {self.STAGED}*: they are renamed into place at this run's "
                      "first save where they can be, and this run writes no sample image until "
                      "then")
        if resume_step is None and not set_aside:
            self._keep_unsaved_runs_samples()

    def _moved(self, number) -> bool:
        """Whether ``images.N/`` of ``number`` (a record's ``kept_number``) holds a whole move:
        a later save of the recorded run did the move that the record owes, then renamed that
        run's staged samples into place (a resume of an older set moved them as the other
        run's). N named nothing when it was claimed, so only that move made the folder; one
        without a sample (a kill between its mkdir and its mark) holds none."""
        if number is None:
            return False
        kept = numbered(samples_folder(self.images), number)
        if not kept.is_dir() or kept.is_symlink() or os.path.lexists(kept / self.UNFINISHED):
            return False
        return any(self.SAMPLE.match(path.name) for path in kept.iterdir())

    def _keep_unsaved_runs_samples(self) -> None:
        """A new run's ``_keep_samples``, its mark left to ``log_kept``; where it fails, said in
        one line, and tried again before each save as a set-aside's (the samples left in images/
        are another run's)."""
        try:
            self._keep_samples(log_kept=False)
        except OSError as err:
            from fastp2p.train.checkpoints import describe_os_error

            self._say(f"warning: the sample images of a run that saved no checkpoint in "
                      f"{self.images} were not moved aside ({describe_os_error(err)}); they "
                      "stay there, moved at each save until that works, and this run's are "
                      f"written as {self.STAGED}* until then")
            self.setting_aside = True

    def _keep_samples(self, log_kept: bool = True) -> None:
        """The samples in images/ moved into ``images.N/`` (``KeptNumber``; made here: a folder
        of that name is never written into) beside it, or beside the folder it links to
        (``samples_folder``), and ``_kept_line`` said, formatted with ``images`` (images/),
        ``count`` and ``kept`` (where they went); the user's other files stay. A move that
        failed or was killed part-way is taken up again into the same ``images.N/`` (a new one
        split one run's samples over two numbers): by this process, or by the next from the mark
        (``UNFINISHED``) the folder holds from its making to the move's end (its N taken for
        the loss log too), or, where the loss log is not kept yet (``log_kept`` False), to
        ``log_kept``."""
        samples = self._claim_kept()
        if self._kept is None:
            return
        # one that fails keeps the folder and its mark, even with none moved: the loss log took
        # or takes its N (KeptNumber), and a kill before the retry left images.N/ free and the
        # next start claimed N+1 beside loss_log.N.csv
        for path in samples:
            os.rename(path, self._kept / path.name)
            self._kept_count += 1
        if log_kept:
            unmark(self._kept)
        linked = samples_folder(self.images)
        where = (f"{self._kept.name}/ beside it" if linked == self.images
                 else f"{self._kept}/ beside {linked}, the folder it links to")
        self._say(self._kept_line.format(images=self.images, count=self._kept_count, kept=where))

    def log_kept(self) -> None:
        """A new run's page, once the loss log of the run whose samples it moved aside is kept
        too (LossLog, made after the page with its ``KeptNumber``), or found nothing to keep: the
        mark of that move removed from ``images.N/``, where the move is done (one that failed
        keeps it until a save's move is). Removed with the move, a kill between it and the log's
        left no trace of N: the next start kept the log as ``loss_log.N+1.csv``, beside no
        samples of its run; the mark gives the next start this N."""
        if self._kept is not None and not self.setting_aside:
            unmark(self._kept)

    def _claim_kept(self) -> list:
        """The samples in images/ (paths), once ``_kept`` is the folder ``_keep_samples`` moves
        them into: the one a move left unfinished (``UNFINISHED``; its N taken), else one
        claimed where there are samples, else None."""
        linked = samples_folder(self.images)
        if self._kept is None:
            self._kept = self._kept_number.unfinished(linked)
            self._kept_count = 0 if self._kept is None else sum(
                1 for path in self._kept.iterdir() if self.SAMPLE.match(path.name))
        samples = [path for path, *_ in self._sample_files()]
        if self._kept is None and samples:
            self._kept = self._kept_number.claim(linked, _make_marked_folder)
        return samples

    def claim_before_save(self) -> None:
        """With samples to set aside (``setting_aside``): the ``images.N/`` they go to claimed,
        marked as a move unfinished (``_claim_kept``), just before LossLog's
        ``set_aside_before_save`` renames the log to ``loss_log.N.csv``, this N (``KeptNumber``).
        A kill after the log's rename and before ``set_aside_before_save`` moved the samples
        left no trace of that N: the next start kept the killed run's new log under the next
        N and moved the samples into ``images.N+1/`` beside it, not into the N of their own
        run's log; the mark takes them into ``images.N/``. Call it on the thread that writes
        the samples."""
        if self.setting_aside:
            self._claim_kept()

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
                    unlink_file(path)
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
