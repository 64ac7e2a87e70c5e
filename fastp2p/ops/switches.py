"""On-by-default switches for the inference fast paths (eval folding, packed oneDNN weights,
the transposed convolutions' phase form), which the benchmarks turn off inside a block to time
the path they replace."""
import contextlib
import threading


class Switch(threading.local):
    """``on`` until a ``with switch.off():`` block, and again after it (nesting restores). Per
    thread: a block in one thread (a benchmark timing the plain path) leaves the fast paths of
    every other thread (a server's requests) on."""

    def __init__(self):
        self.on = True  # threading.local runs __init__ again in each thread that reads it

    @contextlib.contextmanager
    def off(self):
        previous, self.on = self.on, False
        try:
            yield
        finally:
            self.on = previous
