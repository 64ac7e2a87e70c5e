"""A second Ctrl-C (or SIGTERM) in the step that the first one lets finish stops the run at
once, without saving: one line says so and what --continue_train will resume from, exit code
128 + its signal (130, 143 for SIGTERM), no traceback; later ones are ignored, as are those
once the run saves. A first one saves and stops (tests/test_train_resume.py)."""
import os
import signal
import subprocess
import sys
import threading

import pytest

import fastp2p.cli as cli
from fastp2p.train.stop_requests import SecondStopRequest, StopRequests


def test_the_second_request_interrupts_with_its_reason():
    with StopRequests() as stops:
        stops._handle(signal.SIGINT, None)
        assert stops.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt, match="without saving"):
            stops._handle(signal.SIGINT, None)


def test_a_second_sigterm_exits_with_143_and_later_requests_are_ignored():
    """A second SIGTERM exited with 130, as a Ctrl-C does; a third one interrupted what the
    second left to do (its way out)."""
    with StopRequests() as stops:
        stops._handle(signal.SIGINT, None)
        with pytest.raises(SecondStopRequest) as second:
            stops._handle(signal.SIGTERM, None)
        assert second.value.exit_code == 128 + signal.SIGTERM
        stops._handle(signal.SIGINT, None)
    assert stops.signal_number == signal.SIGINT


def _second_request(*signals) -> SecondStopRequest | None:
    """What sending ``signals`` to this process, one after the other (as a scheduler or
    torchrun sends them: the handler runs before os.kill's caller goes on), raised: a
    SecondStopRequest, or None. Caught here: a KeyboardInterrupt would end pytest's session."""
    try:
        for number in signals:
            os.kill(os.getpid(), number)
    except SecondStopRequest as second:
        return second
    return None


def test_a_shared_stop_signal_repeated_before_the_agreement_is_the_same_request():
    """SLURM signals every process of a job step: a torchrun rank gets its own SIGTERM and the
    one torchrun forwards. The second stopped the rank without saving, as a second request."""
    with StopRequests(shared=True) as stops:
        assert _second_request(signal.SIGTERM, signal.SIGTERM) is None
        assert stops.signal_number == signal.SIGTERM and stops.stop_request() is None
        stops.agree(stops.shared_flags())
        assert stops.stop_request() == signal.SIGTERM
        # once the stop is agreed, the same signal again is a second request
        assert _second_request(signal.SIGTERM).exit_code == 128 + signal.SIGTERM


def test_the_soft_cpu_time_limit_repeated_is_one_request():
    """The kernel sends SIGXCPU again each CPU second past the soft limit: the run saves in the
    time before the hard limit's SIGKILL, not stopped at once by the repeat."""
    previous = signal.getsignal(signal.SIGXCPU)
    try:
        with StopRequests() as stops:
            assert signal.getsignal(signal.SIGXCPU) == stops._handle
            assert _second_request(signal.SIGXCPU, signal.SIGXCPU) is None
            assert stops.stop_request() == signal.SIGXCPU
            assert _second_request(signal.SIGINT).exit_code == 128 + signal.SIGINT
    finally:  # the block leaves SIGXCPU ignored, for the rest of a run's process
        signal.signal(signal.SIGXCPU, previous)


# A run's stop by SIGXCPU, then the kernel's next SIGXCPU as the process winds down
CPU_LIMIT_AFTER_THE_STOP = """\
import os, signal
from fastp2p.train.stop_requests import StopRequests
signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # as a process starts
with StopRequests() as stops:
    os.kill(os.getpid(), signal.SIGXCPU)
os.kill(os.getpid(), signal.SIGXCPU)
print(signal.Signals(stops.stop_request()).name)
"""


def test_the_soft_cpu_time_limit_after_the_stop_is_ignored(tmp_path):
    """Its default action killed a run that had saved and was exiting with a core dump (-24,
    and a core file of hundreds of MB, not exit code 152)."""
    result = subprocess.run([sys.executable, "-c", CPU_LIMIT_AFTER_THE_STOP], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "SIGXCPU\n"), result


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM),
                                     (signal.SIGTERM, signal.SIGINT)],
                         ids=["TERM-TERM", "TERM-INT"])
def test_a_second_stop_request_of_one_process_stops_at_once(signals):
    with StopRequests() as stops:
        second = _second_request(*signals)
    assert second.exit_code == 128 + signals[1] and stops.signal_number == signals[0]


def test_another_shared_stop_signal_before_the_agreement_is_the_same_request_too():
    """A rank whose stdout reader went away (a SIGPIPE request) then got SLURM's SIGTERM: that
    stopped it at once, without saving (the second reviewer's finding)."""
    with StopRequests(shared=True) as stops:
        stops._handle(signal.SIGPIPE, None)   # as stdout_reader asks, no signal delivered
        assert _second_request(signal.SIGTERM) is None
        stops.agree(stops.shared_flags())
        assert stops.stop_request() == signal.SIGPIPE
        assert _second_request(signal.SIGINT).exit_code == 128 + signal.SIGINT


def test_requests_after_hold_are_only_recorded():
    with StopRequests() as stops:
        stops._handle(signal.SIGTERM, None)
        stops.hold()
        stops._handle(signal.SIGTERM, None)
    assert stops.signal_number == signal.SIGTERM


def test_outside_the_main_thread_no_handler_is_installed():
    """signal.signal raises there: StopRequests failed the command it guarded."""
    before = {sig: signal.getsignal(sig) for sig in StopRequests.SIGNALS}
    seen, errors = [], []

    def guarded():
        try:
            with StopRequests():
                seen.append({sig: signal.getsignal(sig) for sig in StopRequests.SIGNALS})
        except ValueError as err:   # signal.signal's; asserted in the test's thread
            errors.append(err)
    thread = threading.Thread(target=guarded)
    thread.start()
    thread.join()
    assert errors == [] and seen == [before]


@pytest.mark.parametrize("stop,shown,code", [
    (SecondStopRequest("a second stop request: stopped at once, without saving",
                       signal.SIGINT), "without saving", 130),
    (SecondStopRequest("a second stop request", signal.SIGTERM), "second stop request", 143),
    (KeyboardInterrupt(), "Ctrl-C", 130)], ids=["second-INT", "second-TERM", "ctrl-c"])
def test_an_interrupted_command_ends_in_one_line_with_128_plus_the_signal(monkeypatch, capsys,
                                                                         stop, shown, code):
    def interrupted(args):
        raise stop
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    cli._subcommand_parser(parser, "info").set_defaults(run=interrupted)
    assert cli.main(["info"]) == code
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "fastp2p info: stopped (" in captured.err
    assert shown in captured.err and "Traceback" not in captured.err


def test_the_command_line_is_read_without_torch(tmp_path):
    """`import fastp2p` and every command's parser load no torch, numpy, Pillow or Triton: a
    Ctrl-C while a command loads them lands in the command (one line, 130, above) instead of a
    traceback from the import, and --help answers at once (it took 4.5 s with torch)."""
    import subprocess
    import sys
    probe = ("import sys, fastp2p, fastp2p.cli\n"
             "parser = fastp2p.cli.build_parser()\n"
             "for name in ('train', 'test', 'pack', 'bench', 'info'):\n"
             "    fastp2p.cli._subcommand_parser(parser, name).format_help()\n"
             "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'triton') if m in sys.modules))\n")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_public_names_load_on_first_use():
    import fastp2p
    from fastp2p.nn import UNet
    assert fastp2p.UNet is UNet and "UNet" in dir(fastp2p)
    assert fastp2p.nn.unet.UNet is UNet  # a subpackage reached as an attribute
    with pytest.raises(AttributeError, match="no attribute 'Unet'"):
        fastp2p.Unet


def test_a_second_request_while_the_stop_s_save_is_written_says_the_save(tmp_path, monkeypatch,
                                                                        capsys):
    """The second Ctrl-C came as the first one's latest_* was written: the run said "stopped at
    once, without saving", and its end (which waits for the writer) then saved the set all the
    same (QA notebook 4). From its submission on, that save is said, whatever comes later."""
    import time

    from fastp2p.train.checkpoints import CheckpointFolder
    from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset

    write = CheckpointFolder.write

    def second_ctrl_c_then_write(self, labels, snapshot, step=0, replacing=False):
        os.kill(os.getpid(), signal.SIGINT)   # handled in the main thread, waiting on this
        time.sleep(0.2)                       # for it to act first
        write(self, labels, snapshot, step, replacing)
    monkeypatch.setattr(CheckpointFolder, "write", second_ctrl_c_then_write)
    signal_after_step(monkeypatch, 2)
    data = write_aligned_dataset(tmp_path / "data")
    assert cli.main(train_argv(data, tmp_path / "checkpoints")) == 130
    err = capsys.readouterr().err
    folder = CheckpointFolder(tmp_path / "checkpoints", "tiny")
    latest = folder.manifest("latest")   # on disk as main returns: no write goes on behind it
    assert (latest and latest["step"], "without saving" in err) == (2, False), err
    assert f"SIGINT received: saved {folder.path}/latest_* at step 2" in err


# A complete train run as the `fastp2p` command runs it (no argv: the process ends with main),
# which sends itself a SIGTERM as its end report begins
_SIGTERM_AT_THE_END_REPORT = """
import os, signal, sys
from fastp2p.cli import main
from fastp2p.train import train_command
report_end = train_command._report_end
def signalled_then_report(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    report_end(*args, **kwargs)
train_command._report_end = signalled_then_report
sys.exit(main())
"""


def test_a_stop_request_after_a_complete_runs_last_save_leaves_it_complete(tmp_path):
    """The SIGTERM killed the saved, complete run at the default action (-15: a stopped run's
    143 in a shell), its end report unsaid; a stopped run and test ignore it by then."""
    from helpers.train_helpers import train_argv, write_aligned_dataset

    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "checkpoints", "--n_epochs_decay", "0", "--no_html")
    result = subprocess.run([sys.executable, "-c", _SIGTERM_AT_THE_END_REPORT, *argv],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loss log:" in result.stdout and result.stderr == "", result.stdout + result.stderr
