"""From Python, fastp2p.data's names that need Pillow say which extra installs it, as the
commands do (QA r40 N6: a raw "No module named 'PIL'" from deep inside the package)."""
import subprocess
import sys

import pytest

BLOCK_PIL = "import sys; sys.modules['PIL'] = None; import fastp2p.data as d; "


@pytest.mark.parametrize("access", ["d.default_dataroot", "d.default_dataset"])
def test_a_name_that_needs_pillow_names_the_data_extra(access, tmp_path):
    # outside the checkout, whose fastp2p/ would shadow the installed package
    done = subprocess.run([sys.executable, "-c", BLOCK_PIL + access], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"ModuleNotFoundError: fastp2p.data.{access[2:]} needs Pillow: "
                    "pip install 'fastp2p[data]'"), done.stderr


def test_a_missing_submodule_is_still_an_attribute_error(tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCK_PIL + "print(hasattr(d, 'nothing'))"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
