"""The image links of the HTML pages (fastp2p.train.html_page.write_html, and the page of
`fastp2p test`) find their files when the names hold characters URLs treat specially (#, ?, %,
quotes, non-ASCII)."""
import html
import re
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from fastp2p.cli import main
from fastp2p.train.html_page import write_html
from helpers.train_helpers import tiny_test_argv, write_aligned_dataset

NAMES = ("a#1", "c%20d", "k?", "é ü", "it's")


def _broken_links(page: Path) -> list:
    """Each <img src> resolved as a browser does (URL-unescaped after '#' and '?' end the
    path): those whose file does not exist."""
    broken = []
    for source in re.findall(r"<img src='([^']*)'", page.read_text(encoding="utf-8")):
        url = urljoin(page.resolve().as_uri(), html.unescape(source))
        target = unquote(urlsplit(url).path)
        if not Path(target).is_file():
            broken.append(html.unescape(source))
    return broken


def test_write_html_links_find_files_with_url_characters_in_their_names(tmp_path):
    (tmp_path / "images").mkdir()
    sections = []
    for name in NAMES:
        (tmp_path / "images" / f"{name}.png").write_bytes(b"png")
        sections.append((name, [("real_A", f"images/{name}.png")]))
    (tmp_path / "loss #1.png").write_bytes(b"png")
    write_html(tmp_path / "index.html", "t", sections, loss_plot="loss #1.png")
    page = tmp_path / "index.html"
    assert len(re.findall("<img src=", page.read_text(encoding="utf-8"))) == len(NAMES) + 1
    assert _broken_links(page) == []


def test_test_command_page_links_images_named_with_url_characters(tmp_path, trained, capsys):
    data = tmp_path / "data"
    write_aligned_dataset(data, pairs=len(NAMES), phases=("test",))
    for index, name in enumerate(NAMES):
        (data / "test" / f"{index:03d}.png").rename(data / "test" / f"{name}.png")
    assert main(tiny_test_argv(data, trained, tmp_path / "res")) == 0
    page = tmp_path / "res" / "tiny" / "test_latest" / "index.html"
    assert len(re.findall("<img src=", page.read_text(encoding="utf-8"))) == 3 * len(NAMES)
    assert _broken_links(page) == []
