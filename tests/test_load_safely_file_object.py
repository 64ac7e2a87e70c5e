"""load_safely on an open file names the file in its errors as the user knows it: by its path,
not by the file object's repr (``<_io.BufferedReader name='...'>``), or as "the given file
object" when it has no path (BytesIO, a file opened from a descriptor)."""
import io
import os

import pytest
import torch

from fastp2p.nn.checkpoint import load_safely


def _saved_with_a_global():
    buffer = io.BytesIO()
    torch.save({"call": os.system}, buffer)
    return buffer.getvalue()


CONTENTS = {"not_a_checkpoint": (b"epoch,step\n1,2\n", "not a PyTorch checkpoint"),
            "blocked_global": (_saved_with_a_global(), "refused, it holds a Python object")}


@pytest.mark.parametrize("content, message", CONTENTS.values(), ids=list(CONTENTS))
def test_an_open_file_is_named_by_its_path(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with open(path, "rb") as handle, pytest.raises(ValueError) as err:
        load_safely(handle)
    assert str(err.value).startswith(f"{path}: {message}"), err.value


@pytest.mark.parametrize("content, message", CONTENTS.values(), ids=list(CONTENTS))
def test_a_file_object_without_a_path_is_named_as_such(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with open(os.open(path, os.O_RDONLY), "rb") as by_descriptor:
        for source in (io.BytesIO(content), by_descriptor):
            with pytest.raises(ValueError) as err:
                load_safely(source)
            assert str(err.value).startswith(f"the given file object: {message}"), err.value


def test_a_path_and_a_given_name_are_kept(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"epoch,step\n")
    with pytest.raises(ValueError, match=f"^{path}: not a PyTorch"):
        load_safely(path)   # a Path has a .name too (the last part): the whole path is shown
    with open(path, "rb") as handle, pytest.raises(ValueError, match="^shown: not a PyTorch"):
        load_safely(handle, name="shown")
