"""On-by-default switches for the inference fast paths (eval folding, packed oneDNN weights,
the transposed convolutions' phase form), which the benchmarks turn off inside a block to time
the path they replace."""
import contextlib


class Switch:
    """``on`` until a ``with switch.off():`` block, and again after it (nesting restores)."""

    def __init__(self):
        self.on = True

    @contextlib.contextmanager
    def off(self):
        previous, self.on = self.on, False
        try:
            yield
        finally:
            self.on = previous
