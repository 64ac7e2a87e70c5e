"""Byte counts as people read them, for error lines that say how much something needs."""


def binary_size(count: float) -> str:
    """``count`` bytes in the largest binary unit that leaves at least 1 of it: "31.9 PiB",
    "512 bytes"."""
    if count < 1024:
        return f"{count:g} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        count /= 1024
        if count < 1024 or unit == "EiB":
            return f"{count:.1f} {unit}"
