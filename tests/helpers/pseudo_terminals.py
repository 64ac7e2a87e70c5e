"""A pseudo-terminal of a chosen size, for what a command shows on a terminal."""
import contextlib
import fcntl
import os
import pty
import struct
import termios

import pytest


@contextlib.contextmanager
def pseudo_terminal(columns: int, rows: int = 24):
    """(the terminal's side a program writes to, as a file; a function reading what it shows);
    skips the test on a machine without pseudo-terminals."""
    try:
        master, slave = pty.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal on this machine ({error})")
    stream = os.fdopen(slave, "w", buffering=1)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def shown() -> str:
        stream.flush()
        os.set_blocking(master, False)
        text = b""
        while True:
            try:
                text += os.read(master, 65536)
            except BlockingIOError:
                return text.decode(errors="replace")
    try:
        yield stream, shown
    finally:
        stream.close()
        os.close(master)
