"""What ``dir(fastp2p)`` lists: the public names, not the modules the package uses itself."""
import fastp2p


def test_dir_lists_no_helper_module():
    listed = dir(fastp2p)
    assert "importlib" not in listed
    assert {"UNet", "GANLoss", "PatchDiscriminator", "graphed", "__version__"} <= set(listed)


def test_an_uninstalled_source_checkout_says_to_install_it(tmp_path):
    """QA r57: importing fastp2p from its checkout without an install failed on first use
    with a bare "No module named 'fastp2p.kernels'" (kernels/ becomes fastp2p.kernels only
    once installed). A checkout is stood in for: fastp2p/__init__.py, setup.py and kernels/,
    imported with -S so that no installed or editable fastp2p maps fastp2p.kernels."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "fastp2p").mkdir()
    shutil.copy(fastp2p.__file__, tmp_path / "fastp2p" / "__init__.py")
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "kernels").mkdir()
    run = subprocess.run([sys.executable, "-S", "-c", "import fastp2p"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"ImportError: fastp2p is imported from its source checkout {tmp_path} without being "
        f"installed (its kernels/ folder becomes fastp2p.kernels on install): run `pip install "
        f"-e {tmp_path}`, or run from outside the checkout to use an installed fastp2p")
