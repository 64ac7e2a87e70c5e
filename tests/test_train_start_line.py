"""The start line of `fastp2p train` names the image size --preprocess trains at."""
import argparse

import pytest

from fastp2p.train.train_command import _image_size_words


@pytest.mark.parametrize("preprocess, words", [
    ("resize_and_crop", "crop 32"), ("crop", "crop 32"), ("scale_width_and_crop", "crop 32"),
    ("scale_width", "width 40"), ("none", "images at their own size")])
def test_start_line_names_the_training_size(preprocess, words):
    args = argparse.Namespace(preprocess=preprocess, load_size=40, crop_size=32)
    assert _image_size_words(args) == words
