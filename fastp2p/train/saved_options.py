"""A run's options as ``fastp2p train`` writes them beside its checkpoints (``train_opt.txt``,
one ``name: value`` line each, as the reference writes its opt file), what a later command
given other values is told, and the options a later command takes from it: ``--continue_train``
every one its command line leaves out, ``fastp2p test`` the generator's."""
import argparse
import os
from pathlib import Path
from typing import NamedTuple

from fastp2p.file_reads import read_text
from fastp2p.option_types import seed
from fastp2p.train.options import QuickDefault

OPTIONS_FILE = "train_opt.txt"

# Options that change what a resumed run learns from the same command line's other options; a
# change of the networks' own options is refused when their files are loaded.
RESUME_COMPARED = ("dataroot", "phase", "direction", "dataset_mode", "preprocess",
                   "load_size", "crop_size", "no_flip", "serial_batches", "max_dataset_size",
                   "no_dropout", "gan_mode", "lambda_L1", "lr", "beta1", "lr_policy", "seed",
                   "n_epochs", "n_epochs_decay", "lr_decay_iters", "lr_step_at", "batch_size")

# Options a resumed run never takes from its options file, as they belong to one invocation,
# not to the run: how this one resumes (the mode flags), where the run is and which of its
# checkpoints to load (--name and --suffix name the folder the file is read from; --epoch and
# --load_iter pick the set), and what fits the machine and the person watching it (threads,
# device, CUDA graphs and memory layout: the same results up to rounding; the loss-read
# interval; --verbose).
NOT_INHERITED = frozenset((
    "continue_train", "resume_or_start", "overwrite",
    "name", "checkpoints_dir", "suffix", "epoch", "load_iter",
    "num_threads", "device", "gpu_ids", "graphs", "channels_last",
    "log_every", "print_freq", "verbose"))

# The options that build the generator: what ``fastp2p test`` takes from the run's options file
# where its command line leaves them out (the file's other options describe the training).
GENERATOR_OPTIONS = ("netG", "ngf", "norm", "no_dropout", "input_nc", "output_nc")

# Not an option: torch's compute threads in the run's latest invocation, which
# fastp2p.train.cpu_threads chooses from the cores and the load average unless OMP_NUM_THREADS
# fixes them. On a CPU another count sums in another order, so a run is reproduced bit for bit
# only at its count (another gave weights 1e-6 apart after an epoch), which nothing recorded.
COMPUTE_THREADS = "compute_threads"

# Not an option: the folder the run was started in, which a relative --dataroot taken from the
# file is relative to (a resume from another folder read another dataset, or none).
WORKING_DIR = "working_dir"

# The file's last line, as the reference ends its own: a file without it was cut short (it is
# not fsynced, so a power loss can leave it short or empty) and the options it lacks would go
# back to their defaults in silence. Before it, fastp2p ended the file with WORKING_DIR's line;
# its earliest builds' files end with neither and are taken as cut short: the options added
# since are named in the warning, which says an older fastp2p may have written the file.
END_LINE = "----------------- End -------------------"

# Why a file may lack its last line, as the warnings say it.
_CUT_SHORT = "cut short, by a power loss say, or written by an older fastp2p"


class DatarootFromHere(NamedTuple):
    """A relative --dataroot taken from an options file without WORKING_DIR, so read from the
    current folder, and ``why`` the file lacks that line, as the lines that name it say it."""
    dataroot: str
    why: str

    @classmethod
    def of_file(cls, dataroot: str, complete: bool) -> "DatarootFromHere":
        """``dataroot`` of a file that is whole (``complete``: an older fastp2p's, the
        reference's) or not (cut short in or before its WORKING_DIR line)."""
        return cls(dataroot, "an older fastp2p's file, or the reference's" if complete
                   else f"it ends before its last line: {_CUT_SHORT}")


# Saved values read with the range they were written under, wider than what the option takes
# when typed: a --seed above 2**32-1 was valid before --seed was bounded for new runs, and a run
# started with one resumes with it as it was (the crop and flip draws use the whole seed;
# refused, it went back to the default seed 0 partway through the run).
SAVED_VALUE_TYPES = {"seed": seed}

# The most of an options file that is read (FileTooLarge, a ValueError, past it: "cannot be
# read"): fastp2p writes about 2 KB; a sparse 3 GB file was read whole, then MemoryError.
MAX_OPTIONS_BYTES = 1 << 20


def refuse_values_read_back_otherwise(args) -> None:
    """ValueError (one line) naming the first option whose value ``write_options`` cannot
    record (``_recorded_otherwise``): a --continue_train took another value in silence (a
    --dataroot "data " resumed on ./data), and a line break in any value, --name too, wrote
    lines of its own into the file (``--name $'x\\nlr: 5'`` resumed at --lr 5). Refused rather
    than written in another form: the file stays the reference's, which people and the
    reference read, and a trailing space or line break in a name or path is almost always a
    quoting slip. A NOT_INHERITED value is refused for a line break alone: nothing reads it
    back, and a run folder whose name ends in a space resumes."""
    for key, value in sorted(vars(args).items()):
        why = _recorded_otherwise(key, value)
        if why:
            raise ValueError(f"--{key} {value!r} {why}; give it without (rename a folder so "
                             "named, or give a link to it)")


def _recorded_otherwise(key: str, value) -> str | None:
    """Why the options file cannot record option ``key``'s ``value``, and what of it, or None:
    a line break in any value; for an option --continue_train reads back (not NOT_INHERITED),
    a line that reads back as another value too."""
    if not isinstance(value, str):
        return None
    cannot_record = f"so the run's {OPTIONS_FILE} cannot record it"
    if "\n" in value or "\r" in value:   # the file is read with every line end as "\n"
        return (f"holds a line break (the file holds one option a line), {cannot_record}: "
                "the text after the break would be lines of their own, which --continue_train "
                "reads as options")
    if key in NOT_INHERITED:
        return None
    why = _read_back_otherwise(value)
    return why and f"{why}, {cannot_record}: --continue_train would read another value"


def _read_back_otherwise(value: str) -> str | None:
    """Why ``value``'s ``name: value`` line, one line, does not read back as ``value``, or
    None."""
    if value.endswith(" "):
        return "ends in a space (the reference pads its values with spaces, which are read off)"
    if _DEFAULT_NOTE in value:
        return (f"holds {_DEFAULT_NOTE!r} (the reference's note of a default, which is read "
                "off)")
    return None


# What the reference writes after a value that is not its default: '\t[default: D]'.
_DEFAULT_NOTE = "\t[default: "


def write_options(args, path: Path, started_here: bool = True,
                  compute_threads: int | None = None) -> None:
    """Renamed into place: a link planted at the name is replaced, its target left alone. An
    OSError names ``path`` (``replacing`` names it: a full disk's names no file).
    ``started_here``: the current folder is recorded as WORKING_DIR; False where a relative
    --dataroot was taken from a file that does not say where it is relative to
    (``TakenOptions.dataroot_from_here``), which the next resume then says again.
    ``compute_threads``: recorded as COMPUTE_THREADS where given."""
    from fastp2p.atomic_files import replacing
    lines = [f"{key}: {value}" for key, value in sorted(vars(args).items()) if key != "run"]
    if compute_threads is not None:
        lines.append(f"{COMPUTE_THREADS}: {compute_threads}")
    if started_here:
        lines.append(f"{WORKING_DIR}: {os.getcwd()}")
    lines.append(END_LINE)
    with replacing(path, durable=False) as file:
        # a path given in bytes that are not UTF-8 (a Latin-1 folder name) reaches Python as
        # lone surrogates, which strict UTF-8 cannot write: written back as its own bytes
        file.write(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))


def read_options(path: Path, errors: str = "strict") -> dict:
    """{name: value text} of the options file at ``path``: fastp2p's ``name: value`` lines, or
    the reference's (``{name:>25}: {value:<30}`` and ``\\t[default: D]`` where the value is not
    the default, between two dashed lines). OSError, or ValueError where it is no regular file,
    larger than MAX_OPTIONS_BYTES or (with ``errors`` "strict") not UTF-8."""
    return _parsed(_text(path, errors))


def _text(path: Path, errors: str) -> str:
    return read_text(path, MAX_OPTIONS_BYTES, encoding="utf-8", errors=errors)


def _parsed(text: str) -> dict:
    saved = {}
    for line in _whole_lines(text):
        name, colon, value = line.partition(": ")
        if colon:
            # spaces only: the reference pads its values with them, and a value may end in
            # what a bare rstrip() also strips (U+2028, U+0085, a form feed, a tab)
            saved[name.strip()] = value.split(_DEFAULT_NOTE, 1)[0].rstrip(" ")
    return saved


def _whole_lines(text: str) -> list:
    """``text``'s lines but a last one without its newline: a line cut short (by hand, or a
    copy cut short) is no value, as ``lr: 0.00`` of ``lr: 0.0002`` read as --lr 0.0. Split at
    "\\n" alone: text mode already reads "\\r\\n" and "\\r" as "\\n", and a value may hold
    what ``splitlines`` also breaks at (U+2028, U+0085, a form feed: ``--dataroot
    /data/a\\u2028b`` read back as /data/a)."""
    return text.split("\n")[:-1]


def _complete(text: str) -> bool:
    """Whether an options file's ``text`` ends as a whole one does: with a newline, after
    END_LINE (fastp2p's and the reference's files) or a WORKING_DIR line (fastp2p's before
    END_LINE; its earliest builds' end with neither). A last line without its newline is
    left out (``_whole_lines``), so the warning names its option, even after END_LINE."""
    lines = _whole_lines(text)
    return text.endswith("\n") and (END_LINE in (line.strip() for line in lines)
                                     or lines[-1].startswith(f"{WORKING_DIR}: "))


def changed_options(args, path: Path, keys) -> str:
    """``--direction AtoB -> BtoA, ...`` for the ``keys`` whose values in the options file at
    ``path`` differ from ``args``; "" when none do or the file cannot be read."""
    try:
        saved = read_options(path)
    except (OSError, ValueError):  # UnicodeDecodeError, or not a regular file
        return ""
    return ", ".join(f"--{key} {saved[key]} -> {getattr(args, key)}" for key in keys
                     if key in saved and not _same(saved[key], getattr(args, key))
                     and not (key == "dataroot" and _same_folder(saved, args.dataroot)))


def resume_changes_line(args, path: Path, trains: bool) -> str:
    """The line a resume says of the options it is given that differ from the run's options
    file at ``path`` (RESUME_COMPARED), as ``--lr 0.0002 -> 0.001``: that it trains on with
    them, or (``trains`` False: nothing left to train) that they are not applied, the file
    keeping the run's; "" where none differ."""
    changed = changed_options(args, path, RESUME_COMPARED)
    if not changed:
        return ""
    how = ("trains on with" if trains else "not applied, as nothing is trained (give them again "
           "with a later --n_epochs or --n_epochs_decay):")
    return f"--continue_train: {how} options the run did not use so far (its {OPTIONS_FILE}): " \
           f"{changed}"


def threads_change(path: Path, compute_threads: int) -> str:
    """The line a resume on a CPU says where the options file at ``path`` records another
    count of compute threads than ``compute_threads``; "" where it records the same, none (an
    older fastp2p's file, the reference's) or cannot be read."""
    try:
        saved = read_options(path).get(COMPUTE_THREADS, "")
    except (OSError, ValueError):  # UnicodeDecodeError, or not a regular file
        return ""
    if not (saved.isascii() and saved.isdigit()) or int(saved) == compute_threads:
        return ""
    return (f"--continue_train: torch computes with {compute_threads} thread(s) where the run "
            f"so far used {saved} (its {OPTIONS_FILE}): it trains on, equal within rounding to "
            f"a run at one count, not bitwise; OMP_NUM_THREADS={saved} keeps the run's count")


def _same_folder(saved: dict, dataroot) -> bool:
    """Whether the options file ``saved`` records ``dataroot``: its --dataroot relative to the
    folder the run started in, resolved as ``take_saved_options`` takes it, is the same path
    as ``dataroot`` relative to this one (``./ds2`` taken from the file is ``/run/folder/ds2``,
    no change), links resolved (the run's folder reached through a link is no other dataset)."""
    if saved["dataroot"] == "None" or dataroot is None:
        return False
    return (os.path.realpath(_absolute(saved["dataroot"], saved.get(WORKING_DIR)))
            == os.path.realpath(_absolute(dataroot)))


def _absolute(path, working_dir=None) -> str:
    """``path`` relative to ``working_dir`` (None: the current folder), normalised."""
    return os.path.normpath(os.path.join(working_dir or os.getcwd(), path))


def _same(saved: str, value) -> bool:
    """Whether an options file's ``saved`` text records ``value``: its text, or for a number
    the same number written otherwise (--max_dataset_size 64 was written "64.0" before it
    parsed as an int)."""
    if saved == str(value):
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(saved) == value
    except ValueError:
        return False


def given_options(parser: argparse.ArgumentParser, words) -> frozenset:
    """The dests of the options that ``words`` (a command's own words, already parsed once by
    ``parser`` without error) give explicitly, whatever their values: a word for word default
    (``--lr 0.0002``) is given too, which a comparison with the defaults could not tell."""
    unset = object()   # argparse sets neither a default nor a converted default over it
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_known_args(words, namespace)
    return frozenset(action.dest for action in parser._actions
                     if getattr(namespace, action.dest) is not unset)


def command_parser(register) -> argparse.ArgumentParser:
    """The parser a command module's ``register`` adds (its options' types and choices)."""
    commands = argparse.ArgumentParser().add_subparsers()
    register(commands)
    return next(iter(commands.choices.values()))


class TakenOptions:
    """What ``take_saved_options`` took: ``taken``, (dest, value, whether it is the value this
    command line's default gives); ``refused``, (dest, text, the default used instead) for
    values this fastp2p's options do not read (a reference run's, or an older fastp2p's);
    ``options``, dest -> the option as a command line writes it (``--skip-bad``);
    ``missing``, the dests it would have taken from a file cut short (not ``_complete``) that
    lacks them, left at this command line's; ``absent``, those a whole file lacks (an older
    fastp2p's, which had no such option), left so too; ``dataroot_from_here``, the DatarootFromHere
    of a relative --dataroot taken from a file without WORKING_DIR (an older fastp2p's, the
    reference's, or one cut short), or None."""

    def __init__(self, path: Path):
        self.path, self.taken, self.refused, self.options = path, [], [], {}
        self.missing, self.absent, self.dataroot_from_here = [], [], None

    def summary(self) -> str:
        """How many were taken, and those that differ from the defaults, as a command line
        gives them (a flag that is on by itself: ``--no_html``)."""
        changed = [self._words(dest, value) for dest, value, default in self.taken
                   if not default]
        return (f"took {len(self.taken)} option(s) the command line leaves out from {self.path}"
                + (f"; not the defaults: {' '.join(changed)}" if changed
                   else ", all at their defaults"))

    def warnings(self) -> list:
        """What of the file could not be taken, and what is used instead: one text each."""
        warnings = []
        if self.refused:
            warnings.append(f"warning: {self.path} holds values this fastp2p cannot read, so "
                            "the defaults are used in their place: " + ", ".join(
                                f"{self._option(dest)} {text!r} (the default {default} used)"
                                for dest, text, default in self.refused))
        if self.missing:
            missing = " ".join(map(self._option, self.missing))
            warnings.append(f"warning: {self.path} ends before its last line ({_CUT_SHORT}), "
                            "so these are the command line's defaults, not the run's: "
                            f"{missing}; give the run's on the command line where they differ")
        if self.dataroot_from_here:
            dataroot, why = self.dataroot_from_here
            warnings.append(f"warning: {self.path} does not record the folder the run was "
                            f"started in ({why}), so its --dataroot {dataroot} is read from "
                            f"the current folder, as {_absolute(dataroot)}; give --dataroot "
                            "to name the run's dataset (the file then records where it is)")
        return warnings

    def _option(self, dest: str) -> str:
        return self.options.get(dest, f"--{dest}")

    def _words(self, dest: str, value) -> str:
        return self._option(dest) if value is True else f"{self._option(dest)} {value}"


def saved_options_note(args, register, given, path: Path, dests=None,
                       what: str = "the options") -> tuple:
    """``take_saved_options`` with the parser of ``register``'s command: (what it took, a
    TakenOptions, or None where the file cannot be read; the line then saying so, else None).
    ``what``: the options taken, as that line names them."""
    try:
        return take_saved_options(args, command_parser(register), given, path, dests), None
    except (OSError, ValueError) as err:   # ValueError: not UTF-8, or no regular file
        reason = getattr(err, "strerror", None) or err   # an OSError's without the path
        return None, (f"{path} cannot be read ({reason}): {what} the command line leaves out "
                      "are the defaults")


def take_saved_options(args, parser: argparse.ArgumentParser, given, path: Path,
                       dests=None) -> TakenOptions:
    """Set in ``args`` each option of ``parser`` (of ``dests``; None: all but NOT_INHERITED)
    that the command line does not give (``given``, a ``given_options``) to its value in the
    options file at ``path``, read through the option's own type and choices. Before
    ``resolve_quick_defaults``. OSError or ValueError where the file cannot be read."""
    # a path's bytes that are not UTF-8, as write_options wrote them, read back as the same path
    text = _text(path, errors="surrogateescape")
    saved, complete = _parsed(text), _complete(text)
    result, defaults = TakenOptions(path), []
    for action in parser._actions:
        dest = action.dest
        result.options[dest] = (action.option_strings or [f"--{dest}"])[0]
        if (dest in given or not action.option_strings
                or action.default == argparse.SUPPRESS   # options that mean nothing here
                or (dest in NOT_INHERITED if dests is None else dest not in dests)):
            continue
        if dest not in saved:
            (result.absent if complete else result.missing).append(dest)
            continue
        try:
            value = _read_value(action, saved[dest])
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            result.refused.append((dest, saved[dest], getattr(args, dest)))
            continue
        if dest == "dataroot" and value and saved.get(WORKING_DIR):
            value = _absolute(value, saved[WORKING_DIR])   # as it was; an absolute one stays
        elif dest == "dataroot" and value and not os.path.isabs(value):
            # a file cut short in or before its working_dir line lacks it too
            result.dataroot_from_here = DatarootFromHere.of_file(value, complete)
        defaults.append((dest, value, getattr(args, dest)))
        setattr(args, dest, value)
    # a QuickDefault stands for a value once --dataroot, maybe taken too, is known
    without_dataroot = getattr(args, "dataroot", None) is None
    result.taken = [(dest, value, value == _default_value(default, without_dataroot))
                    for dest, value, default in defaults]
    result.refused = [(dest, text, _default_value(default, without_dataroot))
                      for dest, text, default in result.refused]
    return result


def run_values(args, parser: argparse.ArgumentParser, path: Path, dests) -> argparse.Namespace:
    """A copy of ``args`` with the options ``dests`` (of ``parser``) as the run's options file
    at ``path`` records them, given on the command line or not: what the run trained with. Each
    one the file cannot give (unreadable, cut short, a value this fastp2p does not read) keeps
    ``args``' value, which the resume took in its place and said so; one a whole file lacks
    (an older fastp2p's) is its default, as that run had it (an option added since keeps the
    earlier behaviour as its default)."""
    values = argparse.Namespace(**vars(args))
    try:
        taken = take_saved_options(values, parser, frozenset(), path, dests)
    except (OSError, ValueError):   # said as the resume took its options
        return values
    without_dataroot = getattr(values, "dataroot", None) is None
    for dest in taken.absent:
        setattr(values, dest, _default_value(parser.get_default(dest), without_dataroot))
    return values


def _default_value(default, without_dataroot: bool):
    """The value a default of this command line stands for (a QuickDefault's, once
    ``--dataroot`` is known)."""
    if isinstance(default, QuickDefault):
        return default.quick if without_dataroot else default.value
    return default


def _read_value(action: argparse.Action, text: str):
    """``text``, an options file's value, as ``action``'s option reads it; ValueError (or the
    type's own errors) where it reads none."""
    if text == "None" and action.default is None:
        return None
    if action.nargs == 0:   # a flag (store_true, --x/--no-x): written True or False
        if text not in ("True", "False"):
            raise ValueError(f"{text!r} is no flag value")
        return text == "True"
    read = SAVED_VALUE_TYPES.get(action.dest, action.type)
    value = read(text) if read is not None else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{text!r} is not one of {action.choices}")
    return value
