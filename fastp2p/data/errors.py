"""Bad input: one-line errors that name the file and say what to do (DESIGN section 7).

Every dataset scan collects its problems as ``(path, problem)``; ``raise_or_report`` then either
raises a ``DataError`` for the first one (nothing is skipped silently) or, with ``--skip-bad``,
prints the list of skipped files and lets the caller go on without them.
"""
import multiprocessing.util
import os
import sys
import unicodedata
from pathlib import Path

from fastp2p.cache_folder import NoCacheFolder, cache_root
from fastp2p.command_errors import rank_prefix, says_for_its_node

SKIP_HINT = "fix or remove it, or pass --skip-bad to skip bad files"


def printable(text: object) -> str:
    """``text`` with each character that could act on a terminal written as Python writes it
    in a string (``\\n``, ``\\x1b``, ``\\udcff``, ``\\u202e``): control characters, line
    and paragraph separators, bytes that were not UTF-8, and the bidirectional overrides and
    isolates that reorder what follows. A file name (any characters but / and NUL) or a string
    read from a pack's files, shown in one message line, moves no cursor and changes no
    terminal. Everything else stays as it is (a no-break space, an emoji's zero-width joiner),
    so a path shown can still be copied; a printable text is its own ``printable``."""
    text = str(text)
    return "".join(repr(char)[1:-1] if _acts_on_terminal(char) else char for char in text)


def shown_path(path: object) -> str:
    """``path`` as a message shows it: in quotes (Python's repr) when it is empty or starts or
    ends with a blank, which would show as nothing (``--dataroot " "`` was said as
    "error:  : --dataroot folder not found"); as it is otherwise, to copy as typed."""
    text = str(path)
    return repr(text) if text != text.strip() or not text else text


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _acts_on_terminal(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS


def print_note(line: str) -> None:
    """``line``, made ``printable``, on stderr: a note on what the data layer found on its
    node's disk and went on past (files a listing left out, files --skip-bad skipped, an image
    above Pillow's warning limit, a cache that cannot hold the embedded dataset's pack). Under
    torchrun every process of a node reads the same folders, so the node's first process
    (LOCAL_RANK 0) alone says it, with ``rank N: `` off rank 0, as train says its refusals;
    outside torchrun, from the Python API too, it is always said."""
    # The rule is asked here, of command_errors (standard library only, below data), rather
    # than handed down by train: the notes come from calls four deep under create_dataset and
    # refuse_unreadable_split, which every caller, the Python API's too, would have to pass a
    # flag through; and train's print_once_per_node lies above data, which must not import it.
    if says_for_its_node():
        print(rank_prefix() + printable(line), file=sys.stderr)


class DataError(ValueError):
    """A dataset problem the user has to fix; the message is one line naming the file. It is
    made ``printable``: the file names in it are the user's, and a newline or an escape
    sequence in one would split the line or act on the terminal."""

    def __init__(self, message: object) -> None:
        super().__init__(printable(message))


# Python's RuntimeError (3.13 and older) where a thread cannot start: EAGAIN, for a thread
_THREAD_NOT_STARTED = "can't start new thread"


# A data loader worker's exit code where one of its threads could not start (sysexits'
# EX_OSERR, "can't fork"): the main process names the limit, which the worker cannot say, where
# the worker left its marker (``thread_not_started_marker``) too
THREAD_NOT_STARTED_EXIT = 71


def thread_not_started_marker(pid: int) -> str:
    """The empty file that the data loader worker ``pid`` makes in the main process's
    multiprocessing temporary folder before it exits with
    ``THREAD_NOT_STARTED_EXIT``: a dataset's own code, or a C library, may exit with that code
    too, and such a worker was blamed on the limit on processes and threads. A file, named by
    the pid, since torch reports a worker's death by its pid and exit code alone, wherever the
    main process is; it is made and read alike under every start method (a spawned worker
    inherits no memory). Each worker removes, as it starts, the one an earlier worker of its pid
    left (the loader's ``_forget_an_earlier_workers_marker``): a marker counts for the worker
    that made it alone, not for a later one that got its pid.

    A worker finds that folder as the main process does, by ``get_temp_dir``, whatever its
    start method: the loader makes the folder before any worker starts, and each worker's
    Process object carries it in its ``_config``, copied from the main process's
    (multiprocessing/process.py, ``BaseProcess.__init__``), pickled whole to a spawned or
    forkserver worker, which takes that object as its own (spawn.py, ``_main``)."""
    folder = multiprocessing.util.get_temp_dir()
    return os.path.join(folder, f"fastp2p-thread-not-started-{pid}")


def said_thread_not_started(pid: int) -> bool:
    """Whether the data loader worker ``pid`` of this process left its marker: it exited with
    ``THREAD_NOT_STARTED_EXIT`` for a thread it could not start, not for its own code's exit."""
    return os.path.exists(thread_not_started_marker(pid))


def is_thread_not_started(error: BaseException) -> bool:
    """Whether ``error`` is Python's for a thread that could not start (at the limit on
    processes and threads, most likely)."""
    return isinstance(error, RuntimeError) and str(error) == _THREAD_NOT_STARTED


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun`` in agreement: "1 bad file", "2 bad files" (nouns taking "-s")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def what_to_do(path: Path, default: str) -> str:
    """``default`` (fix, remove or skip the file), unless ``path`` lies in a folder fastp2p
    built in its cache folder (the embedded dataset, ``default-*``, and its packs): then to
    delete that folder, which the next run builds anew (a damaged cache file was advised
    --skip-bad, which kept the damaged cache)."""
    try:  # realpath: a loop of links (the error being advised on) is left as it is
        root = Path(os.path.realpath(cache_root()))
        parts = Path(os.path.realpath(path)).relative_to(root).parts
    except (NoCacheFolder, OSError, ValueError):  # ValueError: not under the cache folder
        return default
    if len(parts) < 2 or not parts[0].startswith("default-"):  # (FASTP2P_CACHE may be $HOME)
        return default
    return (f"it is in fastp2p's cache folder: delete {root / parts[0]} and run again, and "
            "fastp2p builds it anew")


def raise_or_report(problems: list[tuple[Path, str]], skip_bad: bool, what: str,
                    skipped: list | None = None) -> None:
    """Raise for the first problem unless ``skip_bad``; then list every skipped file on stderr
    (``print_note``: under torchrun once per node), or add them to ``skipped`` for a caller
    that reports them itself (pack's index)."""
    if not problems:
        return
    if not skip_bad:
        path, problem = problems[0]
        # the scan read headers only (decoding is --skip-bad's): a truncated file shows later
        more = (f" ({counted(len(problems) - 1, 'more bad file')} in {what} by their headers "
                "alone; --skip-bad decodes every image and may find more)"
                if len(problems) > 1 else "")
        raise DataError(f"{path}: {problem}; {what_to_do(path, SKIP_HINT)}{more}")
    if skipped is not None:
        skipped.extend(problems)
        return
    print_note(f"fastp2p: skipped {counted(len(problems), 'bad file')} in {what} (--skip-bad):")
    for path, problem in problems:
        print_note(f"  {path}: {problem}")
