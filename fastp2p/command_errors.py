"""The one way a command's error line begins: ``fastp2p COMMAND: error: ``, as argparse words
the option errors it finds while parsing (``parser.error``). Every command's own refusals and
failures use it too, so that a user, a script or a log reader sees one prefix for all of them,
whichever check found the problem. At the bottom of the layers: ``train``, ``data`` and
``bench`` use it, and it imports nothing.
"""
import sys


def error_line(command: str, message: object) -> str:
    """The line that says ``message`` as an error of ``fastp2p COMMAND`` (``command``: "train",
    "test", "pack", "bench")."""
    return f"fastp2p {command}: error: {message}"


def print_error(command: str, message: object) -> None:
    """Print ``error_line(command, message)`` to stderr."""
    print(error_line(command, message), file=sys.stderr)
