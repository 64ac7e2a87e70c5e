"""`fastp2p pack` without --skip-bad stops at the first bad file and counts the others its scan
found; that scan reads headers only, so a truncated JPEG (only caught when decoded) was left out
of "(N more bad files ...)" and --skip-bad then found more than the count said (QA). The count
now says it is by headers alone, and that decoding may find more."""
import io

from PIL import Image

from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args


def _truncated_jpeg(path):
    """A JPEG whose header reads but whose pixels cannot be decoded: its second half cut off."""
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


def test_the_count_of_more_bad_files_says_decoding_may_find_more(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    for name in ("corrupt.png", "empty.png"):
        (data / "train" / name).write_bytes(b"not a png")
    _truncated_jpeg(data / "train" / "cut.jpg")
    assert main(tiny_pack_args(data, out)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{data / 'train' / 'corrupt.png'}: " in err
    assert err.endswith(f"(1 more bad file in {data / 'train'} by their headers alone; "
                        "--skip-bad decodes every image and may find more)")
    assert main(tiny_pack_args(data, out, "--skip-bad")) == 0
    assert "2 pairs in 2 shards, 3 bad files skipped" in capsys.readouterr().out
