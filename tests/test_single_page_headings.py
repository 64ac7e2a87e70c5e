"""The page of `fastp2p test --dataset_mode single` (QA r2): inputs x.png and x.jpg, whose stems
collide, were headed "x" and "x-2", with no way to tell which was which. Each heading now names
its source file too, escaped."""
import html

from PIL import Image

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, tiny_test_results
from test_translate_single_images import _save_generator


def test_each_heading_names_its_source_file(tmp_path):
    _save_generator(tmp_path / "ck")
    images = tmp_path / "photos"
    (images / "a&b").mkdir(parents=True)
    for name in ("x.png", "x.jpg", "a&b/<y>.png"):
        Image.new("RGB", (32, 32), (200, 30, 30)).save(images / name)
    argv = tiny_test_argv(images, tmp_path / "ck", tmp_path / "res", "--model", "test")
    assert main(argv) == 0
    page = (tiny_test_results(tmp_path / "res") / "index.html").read_text(encoding="utf-8")
    headings = [line.split("<h3>")[1].split("</h3>")[0] for line in page.splitlines()
                if "<h3>" in line]
    assert sorted(html.unescape(heading) for heading in headings) == [
        "<y> (a&b/<y>.png)", "x (x.jpg)", "x-2 (x.png)"], headings
    assert "<h3><y>" not in page   # escaped
