"""``options_given``: the one way `pack --verify` and `bench --plot/--list-peers` find the options
they would ignore. Each command walked its parser's actions its own way: bench's would have
failed on a positional argument (IndexError: no option string), pack's on an option whose
default is SUPPRESS other than --help (AttributeError: not in the namespace)."""
import argparse

from fastp2p.command_errors import options_given


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--size", "-s", type=int, default=4)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--secret", default=argparse.SUPPRESS)
    return parser


def test_only_options_given_other_values_than_their_defaults_by_their_first_spelling():
    parser = _parser()
    assert options_given(parser.parse_args(["here", "--size", "4"]), parser) == []
    assert options_given(parser.parse_args(["-s", "8", "--fast"]), parser) == ["--size", "--fast"]
    assert options_given(parser.parse_args(["--secret", "x"]), parser) == ["--secret"]
