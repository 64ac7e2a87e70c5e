"""Whether output goes to a terminal: progress bars are drawn there only.

A tqdm bar redraws itself with carriage returns many times a second; written to a pipe or a
file (a CI log, ``nohup``, ``| tee``) every frame stays, and the log fills with them. The one
rule for every command (``fastp2p train``'s plain progress lines, ``fastp2p pack``'s bars), at
the bottom of the layers so that ``data`` and ``train`` both use it.
"""


def is_terminal(stream) -> bool:
    """Whether ``stream`` (e.g. ``sys.stderr``) is a terminal: False for a file, a pipe, a
    stream without ``isatty`` or None (Python started without that stream), or a closed one."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
