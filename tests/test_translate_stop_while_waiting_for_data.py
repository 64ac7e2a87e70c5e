"""A stop request (SIGTERM, Ctrl-C) that comes while `fastp2p test` waits for its next image is
taken there, as train's (tests/test_stop_while_waiting_for_data.py): the images written so far
stay, index.html is titled partial and the run exits with 128 + the signal, within seconds.
test checked for it only after each image, so with an image that never came (a hung network
file system, a worker stuck in a decoder) it was ignored for as long as the wait lasted."""
import signal

import pytest

from helpers.train_helpers import (TEST_PAIRS, tiny_test_argv, tiny_test_results,
                                   trained)  # noqa: F401 (fixture)
from test_stop_while_waiting_for_data import stopped_while_blocked


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_while_the_next_image_never_comes_ends_the_run_partial(tmp_path, trained,
                                                                      workers, number):
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path)
    argv[argv.index("--num_threads") + 1] = str(workers)
    images = tiny_test_results(tmp_path) / "images"
    returncode, output = stopped_while_blocked(
        tmp_path, "test", argv, lambda: any(images.glob("*_real_B.png")), number, "an image")
    assert returncode == 128 + number, output
    name = signal.Signals(number).name
    assert f"{name} received: stopped after 1 of {TEST_PAIRS} images" in output, output
    assert "Traceback" not in output, output
    page = (tiny_test_results(tmp_path) / "index.html").read_text()
    assert f"partial: stopped by {name} after 1 of {TEST_PAIRS} images" in page
