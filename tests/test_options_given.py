"""``options_given``: the one way `pack --verify` and `bench --plot/--list-peers` find the options
they would ignore (of those the command line typed, ``given_options``). Each command walked its
parser's actions its own way: bench's would have failed on a positional argument (IndexError: no
option string), pack's on an option whose default is SUPPRESS other than --help
(AttributeError: not in the namespace)."""
import argparse

from fastp2p.command_errors import options_given
from fastp2p.train.saved_options import given_options


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--size", "-s", type=int, default=4)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--secret", default=argparse.SUPPRESS)
    return parser


def _given(parser, words) -> list:
    return options_given(parser, given_options(parser, words))


def test_the_options_typed_by_their_first_spelling_whatever_their_values():
    """An option typed at its default value (``--size 4``) is given too: compared with the
    defaults, it was not, and ``pack --verify`` let such packing options through."""
    parser = _parser()
    assert _given(parser, ["here"]) == []
    assert _given(parser, ["here", "--size", "4"]) == ["--size"]
    assert _given(parser, ["-s", "8", "--fast"]) == ["--size", "--fast"]
    assert _given(parser, ["--secret", "x"]) == ["--secret"]
