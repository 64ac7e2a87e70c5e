"""The ``fastp2p`` command (also ``python -m fastp2p``).

Each subcommand lives beside the code it drives, in a module with ``register(subparsers)`` that
adds its parser and sets ``run`` (a function taking the parsed args, returning an exit code).
Those modules import their heavy dependencies inside ``run``, so ``--help`` stays fast.
"""
import argparse
import contextlib
import importlib
import sys

from fastp2p.command_errors import UsageError, error_line
from fastp2p.import_memory import not_enough_memory, out_of_memory
from fastp2p.stops_deferred import TorchNotImported
from fastp2p.torchrun_variables import TorchrunVariableError, check_launch_variables

COMMAND_MODULES = (
    "fastp2p.info",
    "fastp2p.train.train_command",
    "fastp2p.train.translate_command",
    "fastp2p.bench.command",
    "fastp2p.data.pack_command",
)


class _PrintVersion(argparse.Action):
    """``--version``: fastp2p's version and build fingerprint, which is computed only when asked
    (it reads the package's files), not each time the parser is built."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help=help or "print fastp2p's version and build fingerprint and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from fastp2p.build_fingerprint import version_line
        parser._print_message(version_line() + "\n", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from fastp2p.command_errors import CommandParser

    parser = CommandParser(
        prog="fastp2p",
        description="Fast pix2pix: train, test and benchmark conditional-GAN image translation.",
    )
    parser.add_argument("--version", action=_PrintVersion)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def _subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    return commands.choices[name]


@contextlib.contextmanager
def _caller_torch_threads(in_process: bool):
    """A caller's torch compute-thread count, set again when its command returns: train, test
    and bench choose their own (fastp2p.train.cpu_threads), which must not outlive the call.
    A caller that has not imported torch has none to keep."""
    torch = sys.modules.get("torch") if in_process else None
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def _caller_torch_rng(in_process: bool):
    """A caller's torch random state, set again when its command returns: train and test seed
    torch with --seed, and a resume sets the saved run's state, which must not take the place
    of the caller's own seed. Each CUDA device's too where the caller has CUDA in use (saving
    it otherwise would start CUDA in a caller that does not use it). A caller that has not
    imported torch has none to keep."""
    torch = sys.modules.get("torch") if in_process else None
    if torch is None:
        yield
        return
    cuda_devices = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        yield


def main(argv=None) -> int:
    """Run ``argv`` (None: this process's command line, as the ``fastp2p`` and ``python -m
    fastp2p`` entries call it); the exit code, 2 for an option error too (only ``--help`` and
    ``--version`` end in argparse's ``SystemExit``, and a ``sys.exit`` in a command's work, a
    tracker package's say, in its own). A caller that passes ``argv`` gets back its own
    Ctrl-C and SIGTERM handlers after a stopped bench run (``stops.caller_handlers_back``), and
    its torch thread count and random state after any command.

    A Ctrl-C is reported in one line from the parser's start on: building the parser imports
    every command's module, and an option's check (``fastp2p.option_types``) may import more
    (numpy, torch: a second on a busy machine); a Ctrl-C there printed a traceback. So is a
    SIGTERM or SIGHUP that comes as the process's entry (no ``argv``) starts, before train or
    test handles them itself (``stop_requests.stop_before_work_with_a_line``); other commands
    get the signals' defaults back once parsed.

    A reader of stdout that goes away ends every command quietly, exit code 141; for train and
    test it is a stop request (``fastp2p.train.stdout_reader``). A memory limit too low for
    torch's import is one line naming it, exit code 1 (``stops_deferred.TorchNotImported``),
    and so is one too low for any other import (``fastp2p.import_memory``), which printed a
    traceback: "to start the command" for the parser's and this module's own, "to run the
    command" for one in the command's work (numpy's, which the commands import there). So is
    a limit on processes and threads too low for numpy's OpenBLAS to start its threads, which
    it said as a Ctrl-C (``fastp2p.import_threads``)."""
    args = argparse.Namespace(command=None)  # argparse sets the command as it reads its name
    return _said_if_out_of_memory("start the command", args, _main, argv, args)


def _said_if_out_of_memory(what: str, args: argparse.Namespace, work, *work_args) -> int:
    """``work(*work_args)``'s exit code; 1 where an import in it ran out of memory, after the
    line that says there was not enough memory to do ``what``. Any other error goes on."""
    try:
        return work(*work_args)
    except (MemoryError, ImportError, OSError) as error:
        reason = out_of_memory(error)
        if reason is None:
            raise
        print(f"{_said_as(args)}: error: {not_enough_memory(what, reason)}", file=sys.stderr)
        return 1


def _said_as(args: argparse.Namespace) -> str:
    """``fastp2p COMMAND``, or ``fastp2p`` before the command is parsed."""
    return "fastp2p" + (f" {args.command}" if args.command else "")


def _main(argv, args: argparse.Namespace) -> int:
    """``main``'s work, and the modules it needs imported here, not at the top: a memory limit
    too low for them is ``main``'s one line too."""
    from fastp2p.bench.stops import caller_handlers_back
    from fastp2p.import_threads import BlasThreadsNotStarted
    from fastp2p.train.stdout_reader import run_with_guarded_stdout
    from fastp2p.train.stop_requests import stop_before_work_with_a_line

    if argv is None:
        stop_before_work_with_a_line()
    # the caller's handlers back only once the stop's line below is printed
    with caller_handlers_back(in_process=argv is not None), \
            _caller_torch_threads(in_process=argv is not None), \
            _caller_torch_rng(in_process=argv is not None):
        try:
            return run_with_guarded_stdout(_parse_and_run, argv, args)
        except UsageError as usage_error:
            # an option error (the parser's, and pack's parser.error; exit code 2): returned, as
            # every other refusal, so that a caller's loop of runs goes on; the command line
            # exits with it all the same. Any other SystemExit goes on to the caller: --help's
            # and --version's (argparse's, as ever), and a sys.exit in a command's work (a
            # tracker package's, a hook's), whose code may be a text, not main's int
            return usage_error.code
        except (TorchNotImported, BlasThreadsNotStarted) as err:
            print(error_line(args.command, err), file=sys.stderr)
            return 1
        except TorchrunVariableError as err:
            print(f"{_said_as(args)}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:  # where a command has no stop of its own to report
            print(f"{_said_as(args)}: stopped ({str(stop) or 'Ctrl-C'})", file=sys.stderr)
            # 128 + the signal (a second stop request, stop_requests.SecondStopRequest, says which)
            return getattr(stop, "exit_code", 130)  # or Ctrl-C's


def _parse_and_run(argv, args: argparse.Namespace) -> int:
    """Parse ``argv`` into ``args`` and run its command."""
    from fastp2p.train.reference_options import older_names_hint
    from fastp2p.train.saved_options import given_options
    from fastp2p.train.stdout_reader import work_begins
    from fastp2p.train.stop_requests import drop_early_stop_handler

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv, namespace=args)
    check_launch_variables()   # before any refusal, which asks LOCAL_RANK who says it
    words = list(sys.argv[1:] if argv is None else argv)   # the command's own words
    words = words[words.index(args.command) + 1:] if args.command else []
    if unknown and args.command:
        # An option between two positional arguments (`fastp2p pack DATAROOT --load_size 72
        # OUT`) leaves the words after it to no positional argument: read the command's own
        # words again, options and positional arguments intermixed.
        args, unknown = _subcommand_parser(parser, args.command).parse_known_intermixed_args(
            words, namespace=argparse.Namespace(command=args.command))
    if unknown:
        # argparse leaves a subcommand's unknown options to the top-level parser, whose usage
        # would say nothing about them: report them with the subcommand's usage instead.
        where = _subcommand_parser(parser, args.command) if args.command else parser
        where.error(f"unrecognized arguments: {' '.join(unknown)}"
                    + older_names_hint(unknown, where))
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    drop_early_stop_handler(args.command)
    if "given_options" in vars(args):   # a command that needs the options the command line typed
        args.given_options = given_options(_subcommand_parser(parser, args.command), words)
    work_begins()
    return _said_if_out_of_memory("run the command", args, _run, args)


def _run(args: argparse.Namespace) -> int:
    """``args``'s command, once numpy is loaded: its OpenBLAS's threads refused at the limit on
    processes and threads are ``BlasThreadsNotStarted``, not a Ctrl-C (``import_numpy``)."""
    from fastp2p.import_threads import import_numpy

    import_numpy()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
