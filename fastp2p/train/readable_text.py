"""Text a person reads on the loss plot and the HTML pages, from names that may hold bytes that
are not UTF-8."""


def readable_text(text: str) -> str:
    """``text`` with the bytes Python keeps as lone surrogates (a name from the command line or
    a file name, under a locale whose encoding is not UTF-8, or bytes that are not UTF-8)
    decoded as UTF-8 where they are (``né`` under ``LC_ALL=C PYTHONUTF8=0``), else shown as
    U+FFFD: matplotlib refuses a lone surrogate (a TypeError: no loss plot at all), and a UTF-8
    page cannot hold one."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (not from a name)
        return text.encode("utf-8", "replace").decode("utf-8")
