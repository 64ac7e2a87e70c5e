"""fastp2p.data imports its names on first use (so `fastp2p --help` works without Pillow), and
still gives what its eager __init__ gave: the public names, and its submodules as attributes
(``fastp2p.data.loader`` right after ``import fastp2p.data``); ``help()`` imports nothing
Pillow needs. Each check runs in a fresh interpreter."""
import subprocess
import sys

SUBMODULES = ("create", "datasets", "default_dataset", "errors", "folders", "loader", "options",
              "transforms")


def _fresh(tmp_path, code):
    # the installed package, from outside the checkout: its source folder would shadow the
    # install, which maps fastp2p.kernels to kernels/ (a clone under test puts itself first
    # with PYTHONPATH, which the subprocess inherits)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_submodules_are_attributes_right_after_import(tmp_path):
    _fresh(tmp_path, "import fastp2p.data as d\n"
                     f"for sub in {SUBMODULES!r}:\n"
                     "    assert getattr(d, sub).__name__ == 'fastp2p.data.' + sub, sub\n"
                     "assert not hasattr(d, 'no_such_name') and not hasattr(d, 'a.b')\n")


def test_public_names_are_attributes(tmp_path):
    _fresh(tmp_path, "import fastp2p.data as d\n"
                     "assert all(callable(getattr(d, n)) for n in d.__all__), d.__all__\n")


def test_help_imports_nothing_pillow_needs(tmp_path):
    _fresh(tmp_path, "import sys, pydoc\n"
                     "sys.modules['PIL'] = None  # as if Pillow were not installed\n"
                     "import fastp2p.data as d\n"
                     "assert 'first use' in pydoc.render_doc(d)\n")
