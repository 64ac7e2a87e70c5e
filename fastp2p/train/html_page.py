"""The HTML pages (the training page's and ``fastp2p test``'s): a title, an optional loss plot
and rows of labelled images, replaced atomically (``report_files``)."""
import html
import os
from pathlib import Path
from urllib.parse import quote

from fastp2p.train.readable_text import readable_text
from fastp2p.train.report_files import replace_atomically


def write_html(path: Path, title: str, sections, loss_plot=None, refresh_s=None) -> None:
    """A page with an optional loss plot and rows of labelled image triplets.

    ``sections``: (heading, [(label, relative image path), ...]) pairs, shown in that order.
    Image paths are file paths ('/'-separated), not URLs: they are URL-quoted here, so a file
    named ``a#1.png``, ``k?.png`` or ``c%20d.png`` is the file the browser loads.
    """
    lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>{_text(title)}</title>"]
    if refresh_s:
        lines.append(f"<meta http-equiv='refresh' content='{int(refresh_s)}'>")
    lines += ["<style>body{font-family:sans-serif} td{padding:4px;text-align:center}"
              " img{width:256px;image-rendering:pixelated}</style></head><body>",
              f"<h1>{_text(title)}</h1>"]
    if loss_plot:
        lines.append(f"<h2>Losses</h2><img src='{_url(loss_plot)}' "
                     "style='width:800px'>")
    for heading, images in sections:
        lines.append(f"<h3>{_text(heading)}</h3><table><tr>")
        for label, source in images:
            # lazy: a browser loads the images scrolled to, not a 300-row page's 600 at once
            lines.append(f"<td><img src='{_url(source)}' loading='lazy'><br>"
                         f"{_text(label)}</td>")
        lines.append("</tr></table>")
    lines.append("</body></html>")
    replace_atomically(Path(path), lambda file: file.write("\n".join(lines).encode("utf-8")))


def _url(relative_path) -> str:
    """A relative file path as an HTML attribute value: URL-quoted (#, ?, % and non-ASCII
    characters would otherwise end or change the path the browser asks for), then escaped. The
    path's own bytes are quoted (os.fsencode), so a file name that is not valid UTF-8 links to
    that file."""
    return html.escape(quote(os.fsencode(str(relative_path))))


def _text(value: str) -> str:
    """``value`` as HTML text, its lone surrogates made ``readable_text``."""
    return html.escape(readable_text(value))
