"""The one way a command's error line begins: ``fastp2p COMMAND: error: ``, as argparse words
the option errors it finds while parsing (``parser.error``). Every command's own refusals and
failures use it too, so that a user, a script or a log reader sees one prefix for all of them,
whichever check found the problem. At the bottom of the layers: ``train``, ``data`` and
``bench`` use it, and it imports nothing but the standard library and
``torchrun_variables`` (standard library only, beside it).

``CommandParser`` gives option errors the same shape: argparse printed a command's whole usage
above its error line (35 lines for ``fastp2p train``), burying the one line that matters.
"""
import argparse
import os
import sys

from fastp2p.torchrun_variables import launched_local_rank

# the exit code of a command refused because another process holds the folder it would write
# (train's run folder, test's results folder, pack's OUT/PHASE): EX_TEMPFAIL of sysexits.h,
# try again later
EXIT_IN_USE = 75


def error_line(command: str, message: object) -> str:
    """The line that says ``message`` as an error of ``fastp2p COMMAND`` (``command``: "train",
    "test", "pack", "bench")."""
    return f"fastp2p {command}: error: {message}"


def says_for_its_node() -> bool:
    """Whether this process says a refusal that every process of its node meets alike: under
    torchrun the first of each node (LOCAL_RANK 0) alone, so that a job's processes do not each
    print it; always, outside torchrun. torchrun's variables are read without torch (maybe not
    imported yet)."""
    return launched_local_rank() == 0


def rank_prefix() -> str:
    """``rank N: `` off rank 0 of a torchrun job (torchrun's RANK), else nothing: what begins a
    line a process other than rank 0 says."""
    rank = os.environ.get("RANK", "0")
    return "" if rank in ("", "0") else f"rank {rank}: "


def print_error(command: str, message: object, context=()) -> None:
    """Print ``error_line(command, message)`` to stderr, after the ``context`` lines (what the
    refused values came from, e.g. the options a resume took from its run)."""
    for line in context:
        print(line, file=sys.stderr)
    print(error_line(command, message), file=sys.stderr)


def options_given(parser: argparse.ArgumentParser, given) -> list:
    """The options (``--name``, first spelling; positional arguments are not options) of
    ``parser`` whose dests are in ``given`` (``fastp2p.cli``'s ``given_options``: the ones the
    command line typed, whatever their values): a mode that reads only some of a command's
    options (``pack --verify``, ``bench --plot``) refuses the others, which it would ignore
    without a word. Typed, not valued other than the default: ``--verify OUT --load_size 286``
    (its default) was let through, though it does nothing either."""
    return [action.option_strings[0] for action in parser._actions
            if action.option_strings and action.dest in given]


def unread_options(options: list) -> str:
    """The end of a refusal of ``options`` (``options_given``'s) that a mode does not read:
    "--a, --b would do nothing: drop them"."""
    return (f"{', '.join(options)} would do nothing: drop "
            f"{'it' if len(options) == 1 else 'them'}")


class UsageError(SystemExit):
    """An option error a ``CommandParser`` found, exit code 2, its lines printed: a SystemExit,
    so a program that parses its own command line ends with it as with argparse's, while
    ``fastp2p.cli.main`` tells it from any other SystemExit of a command's work (a hook's or a
    package's ``sys.exit``, which goes on to its caller) and returns its code."""


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose option errors are two lines: a one-line usage (the command, its
    positional arguments, where ``--help`` explains the options), then argparse's error line.
    Subcommand parsers made by ``add_subparsers`` are of the parent's class, so one at the top
    covers every command."""

    def error(self, message):
        # under torchrun, once per node as the commands' own refusals (every process exits 2)
        if says_for_its_node():
            self._print_message("".join(rank_prefix() + line for line in (
                self.short_usage(), f"{self.prog}: error: {message}\n")), sys.stderr)
        raise UsageError(2)

    def short_usage(self) -> str:
        """``usage: PROG [options] POSITIONALS (`PROG --help` lists every option)``, one line."""
        formatter = self._get_formatter()
        positionals = [action for action in self._actions
                       if not action.option_strings and action.help != argparse.SUPPRESS]
        formatter.add_usage(None, positionals, [], prefix="")
        words = " ".join(formatter.format_help().split()[len(self.prog.split()):])
        return (f"usage: {self.prog} [options]{' ' + words if words else ''} "
                f"(`{self.prog} --help` lists every option)\n")
