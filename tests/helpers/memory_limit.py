"""An address-space limit (`ulimit -v`) set in the test's own process, ample for anything it
runs: the lines that name "this process's memory limit" where one is set can be checked
without running short of memory."""
import contextlib
import resource

_HARD = resource.getrlimit(resource.RLIMIT_AS)[1]
# within the hard limit where there is one; far above any test's needs (64 TiB) otherwise
AMPLE = _HARD if _HARD != resource.RLIM_INFINITY else 1 << 46


@contextlib.contextmanager
def ample_memory_limit():
    """This process's soft address-space limit set to ``AMPLE`` for the block, then put back;
    yields the words the lines name it by."""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    resource.setrlimit(resource.RLIMIT_AS, (AMPLE, _HARD))
    try:
        yield f"this process's memory limit (`ulimit -v`, now {AMPLE // 1024} KiB)"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, _HARD))
