"""Which run folder ``fastp2p test`` reads, and the generator options it takes from there:
the folder --suffix names by options (``{netG}_size{load_size}``), found as the reference's
test finds it or by the folders' own train_opt.txt, and the model options the command line
leaves out, read from that file. ``register``: test's parser registration
(``translate_command.register``), through which those options are read."""
import argparse
from pathlib import Path

from fastp2p.train.options import QuickDefault, resolve_quick_defaults


def take_generator_options(args, given, register) -> tuple:
    """The generator's options the command line does not give (``given``; None: a caller's
    own namespace, all of whose options count as given), taken from the run's options file
    where it has one (the reference's too), so that a run trained with other model options is
    tested without repeating them; (the line that says so, the line of what could not be
    taken from a damaged file, for stderr), each None where there is none."""
    from fastp2p.train.reference_options import run_name
    from fastp2p.train.saved_options import (GENERATOR_OPTIONS, OPTIONS_FILE,
                                             saved_options_note)

    try:   # the folder as --suffix names it (``name_run_folder``)
        path = Path(args.checkpoints_dir) / run_name(args) / OPTIONS_FILE
    except ValueError:   # a --suffix refused: said as the options are checked
        return None, None
    if given is None or not path.exists():
        return None, None
    taken, unreadable = saved_options_note(args, register, given, path, GENERATOR_OPTIONS,
                                           "the generator's options")
    if unreadable:
        return None, unreadable
    warnings = taken.warnings()
    return (f"generator options: {taken.summary()}" if taken.taken else None,
            f"generator options: {'; '.join(warnings)}" if warnings else None)


def resolve_as_test(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve the defaults left in ``args`` as test does; ``args``. A --load_size left out is
    --crop_size: whole images, as the reference's test means (load = crop)."""
    load_size_given = not isinstance(args.load_size, QuickDefault)
    resolve_quick_defaults(args)
    if not load_size_given:
        args.load_size = args.crop_size
    return args


def name_run_folder(args, given, register) -> str | None:
    """Where --suffix names options (``{netG}_size{load_size}``), the run's folder, as --name
    (and no --suffix) in ``args``; the line saying it was not found, else None. Tried in
    order: the folder named with test's own values (the reference's rule: a --load_size left
    out is --crop_size; weights without a train_opt.txt are found so), with train's values
    (a --load_size train left out is its own default), else the one folder whose
    train_opt.txt formats the suffix to its own name (an --ngf train was given, that the
    command line leaves out, is only in that file)."""
    import string

    from fastp2p.train.reference_options import run_name
    try:
        named = [field for _, field, _, _ in string.Formatter().parse(args.suffix or "")
                 if field]
    except ValueError:   # a --suffix refused: said as the options are checked
        return None
    if not named:
        return None
    as_trained = _options_as_train_resolves(args, given)
    tried = {}   # folder: (its values, whose values they are), test's first
    for values, whose in ((resolve_as_test(argparse.Namespace(**vars(args))), "test's values"),
                          (as_trained, "train's values where the command line leaves them out")):
        try:
            folder = Path(args.checkpoints_dir) / run_name(values)
        except ValueError:   # a --suffix refused: said as the options are checked
            return None
        tried.setdefault(folder, (values, whose))
    found = ([folder for folder in tried if folder.is_dir()][:1]
             or _folders_named_by_their_options(args, given, as_trained, register))
    if len(found) != 1:
        return _no_run_folder_line(args.suffix, named, tried, len(found))
    args.name, args.suffix = found[0].name, ""
    return None


def _no_run_folder_line(suffix, named, tried, files_naming) -> str:
    """The line saying no run folder is named by --suffix: the folders tried, the values
    formatted into each, and how many folders' train_opt.txt name them (0 or several)."""
    values = " or ".join(
        ", ".join(f"{field} {getattr(options, field.split('.')[0], '?')}"
                  for field in dict.fromkeys(named)) + f" ({whose})"
        for options, whose in tried.values())
    return (f"no run folder {' or '.join(map(str, tried))}: --suffix {suffix!r} names "
            f"options, here {values}"
            + (f", and {files_naming} folders' train_opt.txt name them" if files_naming else "")
            + "; give the options the run was trained with")


def _options_as_train_resolves(args, given) -> argparse.Namespace:
    """A copy of ``args`` where each option the command line leaves out (``given``; None: a
    caller's namespace, all given) has train's default, resolved as train resolves it."""
    from fastp2p.train import train_command
    from fastp2p.train.saved_options import command_parser

    values = argparse.Namespace(**vars(args))
    if given is not None:
        for action in command_parser(train_command.register)._actions:
            if action.dest in vars(values) and action.dest not in given:
                setattr(values, action.dest, action.default)
    return resolve_quick_defaults(values)


def _folders_named_by_their_options(args, given, as_trained, register) -> list:
    """The folders NAME_* of --checkpoints_dir whose train_opt.txt's options (those the
    command line leaves out) format --suffix to their own name."""
    import glob

    from fastp2p.train.reference_options import run_name
    from fastp2p.train.saved_options import OPTIONS_FILE, command_parser, take_saved_options

    if given is None:   # every option given: no other value to try
        return []
    parser = command_parser(register)
    found = []
    for options_file in Path(args.checkpoints_dir).glob(f"{glob.escape(args.name)}_*/"
                                                        f"{OPTIONS_FILE}"):
        values = argparse.Namespace(**vars(as_trained))
        try:
            take_saved_options(values, parser, given, options_file)
            if run_name(values) == options_file.parent.name:
                found.append(options_file.parent)
        except (OSError, ValueError):   # a file that cannot be read names no folder
            continue
    return found
