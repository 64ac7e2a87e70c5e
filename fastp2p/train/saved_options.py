"""A run's options as ``fastp2p train`` writes them beside its checkpoints (``train_opt.txt``,
one ``name: value`` line each, as the reference writes its opt file), and what a later command
given other values is told."""
from pathlib import Path

from fastp2p.file_reads import read_text

OPTIONS_FILE = "train_opt.txt"

# Options that change what a resumed run learns from the same command line's other options; a
# change of the networks' own options is refused when their files are loaded.
RESUME_COMPARED = ("dataroot", "phase", "direction", "dataset_mode", "preprocess",
                   "load_size", "crop_size", "no_flip", "serial_batches", "max_dataset_size",
                   "no_dropout", "gan_mode", "lambda_L1", "lr", "beta1", "lr_policy", "seed")


def write_options(args, path: Path) -> None:
    """Renamed into place: a link planted at the name is replaced, its target left alone."""
    from fastp2p.atomic_files import replace_text
    lines = [f"{key}: {value}" for key, value in sorted(vars(args).items()) if key != "run"]
    replace_text(path, "\n".join(lines) + "\n", durable=False)


def changed_options(args, path: Path, keys) -> str:
    """``--direction AtoB -> BtoA, ...`` for the ``keys`` whose values in the options file at
    ``path`` differ from ``args``; "" when none do or the file cannot be read (a reference
    run's, say)."""
    try:
        saved = dict(line.split(": ", 1) for line in read_text(path, encoding="utf-8").splitlines()
                     if ": " in line)
    except (OSError, ValueError):  # UnicodeDecodeError, or not a regular file
        return ""
    return ", ".join(f"--{key} {saved[key]} -> {getattr(args, key)}" for key in keys
                     if key in saved and not _same(saved[key], getattr(args, key)))


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
