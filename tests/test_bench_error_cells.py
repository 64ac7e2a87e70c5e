"""A failed job's cell on the bench page (QA r2): the error was cut at 120 characters mid-word
("... internal stack trace (p") and a torch message's lines were joined with double spaces. It
is now cut at a word's end with an ellipsis, its lines joined by one space."""
from fastp2p.bench.render import markdown

CELL_CHARS = 120   # render.ERROR_CELL_CHARS: a number here, so that a change of it shows

RESULTS = {"mode": "quick", "complete": True,
           "environment": {"device": "cpu", "date_utc": "2026-12-06 10:00", "date": "20261206",
                           "commit": "abc1234", "python": "3.11.7", "torch": "2.13.0"},
           "config": {"network_description": "unet_64", "steps": 3, "warmup": 1}}
TORCH_ERROR = ("RuntimeError: CUDA error: an illegal memory access was encountered\n"
               "CUDA kernel errors might be asynchronously reported at some other API call,\n"
               "\n"
               "so the stacktrace below might be incorrect. For debugging consider passing "
               "CUDA_LAUNCH_BLOCKING=1 to get an internal stack trace (pointing at the kernel)")


def _failed_cell(error: str) -> str:
    row = {"peer": "fastp2p", "precision": "fp32", "batch_size": 1, "status": "failed",
           "error": error}
    page = markdown({**RESULTS, "training": [row]})
    (line,) = [line for line in page.splitlines() if line.startswith("| fastp2p |")]
    return line.split(" | ")[3]


def test_a_long_error_is_cut_at_a_words_end_with_an_ellipsis():
    cell = _failed_cell(TORCH_ERROR)
    error = cell.removeprefix("failed: ")
    assert error.endswith("…") and len(error) <= CELL_CHARS + 1, cell
    assert " ".join(TORCH_ERROR.split()).startswith(error[:-1] + " "), cell   # whole words
    assert "  " not in cell and "asynchronously reported" in cell


def test_a_short_error_is_whole_on_one_line():
    assert _failed_cell("out of memory\n  at step 3") == "failed: out of memory at step 3"
