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
    imported with -S so that no installed or editable fastp2p maps fastp2p.kernels. Its path
    has a space: the command said is run as copied, so the path is quoted."""
    import shlex
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "my checkout"
    (checkout / "fastp2p").mkdir(parents=True)
    shutil.copy(fastp2p.__file__, checkout / "fastp2p" / "__init__.py")
    (checkout / "setup.py").write_text("")
    (checkout / "kernels").mkdir()
    run = subprocess.run([sys.executable, "-S", "-c", "import fastp2p"], cwd=checkout,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"ImportError: fastp2p is imported from its source checkout {checkout} without being "
        f"installed (its kernels/ folder becomes fastp2p.kernels on install): run `pip install "
        f"-e {shlex.quote(str(checkout))}`, or run from outside the checkout to use an installed "
        "fastp2p")
