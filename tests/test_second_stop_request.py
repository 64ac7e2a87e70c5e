"""A second Ctrl-C (or SIGTERM) while a run saves after the first stops it at once, without
saving: one line says so and what --continue_train will resume from, exit code 130, no
traceback. A first one saves and stops (tests/test_train_signals*.py)."""
import signal

import pytest

import fastp2p.cli as cli
from fastp2p.train.trainer import StopRequests


def test_the_second_request_interrupts_with_its_reason():
    with StopRequests() as stops:
        stops._handle(signal.SIGINT, None)
        assert stops.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt, match="without saving"):
            stops._handle(signal.SIGINT, None)


@pytest.mark.parametrize("reason,shown", [("a second stop request: stopped at once, without "
                                           "saving", "without saving"), ("", "Ctrl-C")])
def test_an_interrupted_command_ends_in_one_line_with_130(monkeypatch, capsys, reason, shown):
    def interrupted(args):
        raise KeyboardInterrupt(reason)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    cli._subcommand_parser(parser, "info").set_defaults(run=interrupted)
    assert cli.main(["info"]) == 130
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "fastp2p info: stopped (" in captured.err
    assert shown in captured.err and "Traceback" not in captured.err
