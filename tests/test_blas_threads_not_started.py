"""OpenBLAS (numpy's) starts a thread per core as it loads; at a limit on processes and threads
below that (a container's pids limit, `ulimit -u`) it prints why and raises SIGINT in this
process itself. `fastp2p pack`, train, test and info said "stopped (Ctrl-C)", exit code 130,
though nobody pressed it: they now say one line naming the limit, exit code 1 (and the
memory limit where one is set: an address-space limit just too low for the threads' stacks,
`ulimit -v` of 125000-130000 KiB here, fails them alike). A Ctrl-C from elsewhere meanwhile is
still a Ctrl-C.

Emulated where numpy's import starts (a test run cannot count on a pids cgroup): OpenBLAS's
raise(SIGINT), then numpy's import as ever. Reproduced by hand on 2 cores with a cgroup v1
pids.max of 1 for `fastp2p pack`, train and info (OpenBLAS 0.3.31, numpy's wheel)."""
import resource
import signal
import subprocess
import sys
import types

import pytest

from helpers.train_helpers import write_aligned_dataset

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT's sender to read")

# ``sys.argv[1]``'s SIGINT (raise: from this process, as OpenBLAS raises it; kill: from another
# process, as a Ctrl-C comes) as numpy's import starts, under an address-space limit of
# ``sys.argv[2]`` bytes (0: none set), then ``main`` of the rest of argv
SCRIPT = """
import importlib.abc, os, resource, signal, subprocess, sys
if int(sys.argv[2]):
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]),
                                            resource.getrlimit(resource.RLIMIT_AS)[1]))
class SignalAtNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            if sys.argv[1] == "raise":
                signal.raise_signal(signal.SIGINT)
            else:
                subprocess.run(["kill", "-INT", str(os.getpid())], check=True)
        return None
sys.meta_path.insert(0, SignalAtNumpy())
from fastp2p.cli import main
sys.exit(main(sys.argv[3:]))
"""

PACK = ["pack", "data", "packed", "--load_size", "32"]
# an address-space limit (`ulimit -v`) ample for the command, within the hard limit
_HARD = resource.getrlimit(resource.RLIMIT_AS)[1]
CAP = 40 << 30 if _HARD == resource.RLIM_INFINITY else _HARD


def _run(tmp_path, sender: str, cap: int = 0) -> subprocess.CompletedProcess:
    write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    # outside the checkout, whose fastp2p/ would shadow the installed package
    return subprocess.run([sys.executable, "-c", SCRIPT, sender, str(cap), *PACK],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


def _blas_line(run: subprocess.CompletedProcess) -> str:
    """The command's line for OpenBLAS's threads, checked to be its last and only one."""
    assert run.returncode == 1, run.stderr
    line = run.stderr.splitlines()[-1]
    assert line.startswith("fastp2p pack: error: OpenBLAS (numpy's) could not start its "
                           "threads, one per core: raise the limit on processes and threads "
                           "(ulimit -u, or a container's pids limit), or "), line
    assert "OPENBLAS_NUM_THREADS" in line, line
    assert "Ctrl-C" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    return line


def test_openblas_s_own_sigint_is_the_limit_on_processes_and_threads(tmp_path):
    line = _blas_line(_run(tmp_path, "raise"))
    assert "memory" not in line, line
    assert not (tmp_path / "packed").exists()


def test_openblas_s_own_sigint_under_a_memory_limit_names_that_limit_too(tmp_path):
    line = _blas_line(_run(tmp_path, "raise", CAP))
    assert f"or this process's memory limit (`ulimit -v`, now {CAP // 1024} KiB), " in line, line


def test_a_ctrl_c_from_elsewhere_during_numpy_s_import_is_still_a_ctrl_c(tmp_path):
    run = _run(tmp_path, "kill")
    assert run.returncode == 130, run.stderr
    assert run.stderr.splitlines()[-1] == "fastp2p pack: stopped (Ctrl-C)", run.stderr


def _raises(error):
    def raising(*args):
        raise error
    return raising


@pytest.mark.parametrize("where, replacement, error", [
    ("_senders_of_held_sigints", _raises(KeyboardInterrupt), KeyboardInterrupt),
    ("importlib", types.SimpleNamespace(import_module=_raises(ImportError)), ImportError)],
    ids=["taking-the-held-sigints", "numpy-s-import"])
def test_the_signal_mask_is_restored_where_taking_the_held_sigints_raises(monkeypatch, where,
                                                                          replacement, error):
    """A Ctrl-C that another thread received is raised in the main thread wherever it is, in
    the taking of the held SIGINTs too: SIGINT was left blocked there, and a caller of main
    that goes on (the Python API) got no Ctrl-C again. So too where numpy's import itself
    raises (mutation audit: the import taken out of its try left SIGINT blocked, no test
    failing)."""
    from fastp2p import import_threads

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if signal.SIGINT in before or not hasattr(signal, "sigtimedwait"):
        pytest.skip("import_numpy blocks nothing: SIGINT blocked already, or no sigtimedwait")
    monkeypatch.setattr(import_threads, where, replacement)
    try:
        with pytest.raises(error):
            import_threads.import_numpy()
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def test_a_sigint_held_by_a_caller_that_blocked_it_is_left_to_that_caller():
    """A caller (the Python API) that blocks SIGINT itself keeps its held SIGINT, and numpy is
    imported as ever (mutation audit: where import_numpy took it, a SIGINT the caller raised was
    said as OpenBLAS's threads not started, and it was gone, no test failing)."""
    from fastp2p.import_threads import import_numpy

    if not hasattr(signal, "sigtimedwait"):
        pytest.skip("no sigtimedwait: import_numpy takes no SIGINT anywhere")
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        signal.raise_signal(signal.SIGINT)   # held: blocked by this caller
        import_numpy()
        assert signal.SIGINT in signal.sigpending()
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.sigtimedwait({signal.SIGINT}, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
