"""fastp2p.data imports its names on first use (so `fastp2p --help` works without Pillow), and
still gives what its eager __init__ gave: the public names, and its submodules as attributes
(``fastp2p.data.loader`` after ``import fastp2p.data``), in a fresh interpreter."""
import subprocess
import sys

import fastp2p.data


def test_public_names_and_submodules_are_attributes_in_a_fresh_process(tmp_path):
    code = ("import fastp2p.data as d\n"
            "names = sorted(d.__all__)\n"
            "assert all(callable(getattr(d, n)) for n in names), names\n"
            "for sub in ('create', 'datasets', 'default_dataset', 'errors', 'folders', "
            "'loader', 'options', 'transforms'):\n"
            "    assert getattr(d, sub).__name__ == 'fastp2p.data.' + sub, sub\n"
            "assert not hasattr(d, 'no_such_name')\n")
    # run outside the checkout, whose source folder would shadow the installed package
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_dir_lists_the_public_names():
    assert set(fastp2p.data.__all__) <= set(dir(fastp2p.data))
