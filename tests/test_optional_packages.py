"""`pip install fastp2p` alone (torch, numpy): every --help and `fastp2p info` work; the commands
that need Pillow, tqdm, scikit-image (the embedded dataset) or matplotlib (train's loss plot) say
which extra to install in one line (exit 2), never a traceback."""
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fastp2p

ROOT = Path(__file__).resolve().parents[1]


def _blocking(folder: Path, *modules) -> Path:
    """A folder that, first on PYTHONPATH, makes ``modules`` fail to import as when they are not
    installed: the ModuleNotFoundError Python raises, naming the module."""
    for module in modules:
        (folder / module).mkdir(parents=True)
        (folder / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, name={module!r})\n")
    return folder


# Runs each argv through fastp2p.cli.main in one process (one torch import for all of them) and
# prints, per argv, a line `EXIT <code>`; stdout and stderr pass through.
COMMANDS_SCRIPT = """
import sys
from fastp2p.cli import main
for argv in eval(sys.argv[1]):
    try:
        code = main(list(argv))
    except SystemExit as exit:   # --help's (argparse's exit 0); option errors are returned
        code = exit.code
    sys.stdout.flush(); sys.stderr.flush()
    print(f"EXIT {code}", flush=True)
"""


def _run_without(tmp_path, modules, commands):
    """(exit codes, stdout, stderr) of the ``commands`` (argv lists) with ``modules`` blocked."""
    blocked = _blocking(tmp_path / "blocked", *modules)
    package_root = Path(fastp2p.__file__).resolve().parents[1]
    path = os.pathsep.join([str(blocked), str(package_root), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", COMMANDS_SCRIPT, repr(commands)],
                            capture_output=True, text=True, timeout=300,
                            cwd=tempfile.gettempdir(), env={**os.environ, "PYTHONPATH": path})
    codes = [int(line.split()[1]) if line.split()[1].isdigit() else line
             for line in result.stdout.splitlines() if line.startswith("EXIT ")]
    assert len(codes) == len(commands), result.stderr
    return codes, result.stdout, result.stderr


def test_help_and_info_need_neither_pillow_nor_tqdm(tmp_path):
    commands = [["--help"], ["train", "--help"], ["test", "--help"], ["pack", "--help"],
                ["bench", "--help"], ["info"]]
    codes, out, err = _run_without(tmp_path, ("PIL", "tqdm", "matplotlib", "skimage"), commands)
    assert codes == [0] * len(commands), err
    assert "Traceback" not in err
    assert out.count("usage: fastp2p") == 5 and "fastp2p 0.1.0" in out


# matplotlib imports Pillow: without it, matplotlib, installed, fails too, and is not named
# (it was said 'not installed', though installing Pillow alone mends it)
@pytest.mark.parametrize("missing, named", [("PIL", "Pillow"), ("tqdm", "tqdm")])
def test_commands_name_the_missing_package_in_one_line(tmp_path, missing, named):
    commands = [["train", "--name", "x"], ["test", "--name", "x"], ["pack", "in", "out"]]
    codes, _, err = _run_without(tmp_path, (missing,), commands)
    assert codes == [2, 2, 2]
    assert err.strip().splitlines() == [
        f"fastp2p train: error: {named} is not installed: pip install 'fastp2p[train]'",
        f"fastp2p test: error: {named} is not installed: pip install 'fastp2p[data]'",
        f"fastp2p pack: error: {named} is not installed: pip install 'fastp2p[data]'"]


def test_the_embedded_dataset_and_the_loss_plot_name_their_packages_too(tmp_path):
    """Without --dataroot train and test read scikit-image's photographs; train's web page plots
    the losses with matplotlib: missing, each is the same one line and exit 2 (a missing
    scikit-image was exit 1 naming [data] for train; a missing matplotlib trained without its
    plot, the summary blaming 'no losses logged')."""
    commands = [["train", "--name", "x"], ["test", "--name", "x"]]
    codes, _, err = _run_without(tmp_path, ("skimage",), commands)
    assert codes == [2, 2]
    assert err.strip().splitlines() == [
        "fastp2p train: error: scikit-image is not installed: pip install 'fastp2p[train]'",
        "fastp2p test: error: scikit-image is not installed: pip install 'fastp2p[data]'"]
    codes, _, err = _run_without(tmp_path / "plot", ("matplotlib",), [["train", "--name", "x"]])
    assert codes == [2]
    assert err.strip() == ("fastp2p train: error: matplotlib is not installed: pip install "
                           "'fastp2p[train]'")


def _extras() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            return {name: {requirement.split(">")[0].split("=")[0] for requirement in listed}
                    for name, listed in ast.literal_eval(node.value).items()}
    raise AssertionError("setup.py has no extras_require")


@pytest.mark.skipif(not (ROOT / "setup.py").is_file(), reason="needs the source checkout")
def test_each_extra_holds_what_its_commands_import():
    extras = _extras()
    assert {"pillow", "tqdm", "scikit-image"} <= extras["data"]    # test, pack
    assert {"pillow", "tqdm", "matplotlib", "scikit-image"} <= extras["train"]  # + loss plot
    assert {"pillow", "tqdm", "matplotlib"} <= extras["bench"]     # end-to-end trains; chart


def test_bench_end_to_end_names_the_extra_without_tqdm(monkeypatch, tmp_path):
    from fastp2p.bench.end_to_end import make_packed_set
    from fastp2p.optional_packages import MissingPackage

    monkeypatch.setitem(sys.modules, "tqdm", None)  # None in sys.modules: the import fails
    with pytest.raises(MissingPackage, match=r"needs tqdm: pip install 'fastp2p\[bench\]'"):
        make_packed_set(tmp_path, pairs=2, load=8)
    assert not (tmp_path / "synthetic").exists()


@pytest.mark.skipif(not (ROOT / "setup.py").is_file(), reason="needs the source checkout")
def test_bench_help_examples_point_at_no_committed_result():
    """Copied as written, `--plot` on a committed results file rewrote its .md and .png in the
    source tree; the example names a run's file generically and says what it replaces."""
    from fastp2p.bench.command import EPILOG

    assert "--plot RUN.json" in EPILOG and "replaced" in EPILOG
    assert not [word for word in EPILOG.split() if word.startswith("benchmarks/")]


@pytest.mark.parametrize("missing, options", [(("PIL",), ()),
                                              (("PIL", "tqdm"), ("--no-progress",))])
def test_pack_verify_needs_no_pillow(tmp_path, missing, options):
    """--verify checks sizes and checksums, decoding no image (tqdm only for its bar)."""
    from helpers.data_helpers import synthetic_pack

    _, packed = synthetic_pack(tmp_path, pairs=2)
    codes, out, err = _run_without(tmp_path, missing, [["pack", "--verify", str(packed),
                                                        *options]])
    assert codes == [0], err
    assert f"{packed / 'train'}: 2 pairs of 20x40 in 1 shard: checksums OK" in out


def test_three_missing_packages_are_named_as_a_list(monkeypatch):
    """'Pillow, tqdm and matplotlib are not installed', not 'Pillow and tqdm and matplotlib'."""
    from fastp2p import optional_packages

    def refuse(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    monkeypatch.setattr(optional_packages.importlib, "import_module", refuse)
    for modules, named in ((("PIL", "tqdm", "matplotlib"), "Pillow, tqdm and matplotlib are"),
                           (("PIL", "tqdm"), "Pillow and tqdm are"), (("tqdm",), "tqdm is")):
        with pytest.raises(optional_packages.MissingPackage, match=f"^{named} not installed"):
            optional_packages.require_packages(modules, "train")


def _importing(monkeypatch, errors: dict) -> None:
    """optional_packages' imports raise ``errors[module]`` (an exception) where it has one."""
    from fastp2p import optional_packages

    def import_module(name):
        if name in errors:
            raise errors[name]
    monkeypatch.setattr(optional_packages.importlib, "import_module", import_module)


@pytest.mark.parametrize("error, said, mend", [
    (ModuleNotFoundError("No module named 'PIL'", name="PIL"), "No module named 'PIL'",
     "pip install matplotlib, which adds its missing PIL"),   # a dependency missing: pip
    (ModuleNotFoundError("No module named 'kiwisolver'", name="kiwisolver"),  # adds it
     "No module named 'kiwisolver'", "pip install matplotlib, which adds its missing kiwisolver"),
    # an import name that is no pip name: `pip install dateutil` is another package
    (ModuleNotFoundError("No module named 'dateutil'", name="dateutil"),
     "No module named 'dateutil'", "pip install matplotlib, which adds its missing dateutil"),
    (ModuleNotFoundError("No module named 'matplotlib.ft2font'", name="matplotlib.ft2font"),
     "No module named 'matplotlib.ft2font'", "pip install --force-reinstall --no-deps "
     "matplotlib"),           # a part of its own missing: it alone reinstalled
    (ImportError("numpy.core.multiarray failed\nto import"),  # said on one line
     "numpy.core.multiarray failed to import",
     "pip install --force-reinstall --no-deps matplotlib")],
    ids=["dependency", "dependency-not-checked", "import-name", "own-part", "other-error"])
def test_an_installed_package_that_fails_to_import_is_said_so_with_its_error(monkeypatch, error,
                                                                             said, mend):
    """A package that is installed but cannot be imported (its own dependency missing, a broken
    extension) was said 'not installed', and the fix given, installing the extra, did nothing.
    The mend was then always `pip install --force-reinstall matplotlib`: the wrong package where
    a dependency is missing, and its dependencies (numpy...) reinstalled at their newest."""
    from fastp2p.optional_packages import MissingPackage, require_packages

    _importing(monkeypatch, {"matplotlib": error})
    with pytest.raises(MissingPackage) as raised:
        require_packages(("tqdm", "matplotlib"), "train")
    assert str(raised.value) == (f"matplotlib is installed but cannot be imported ({said}): "
                                 f"{mend}")
    with pytest.raises(MissingPackage) as raised:
        require_packages(("matplotlib",), "bench", needed_by="fastp2p bench --plot")
    assert str(raised.value) == (f"fastp2p bench --plot needs matplotlib, which is installed but "
                                 f"cannot be imported ({said}): {mend}")


def test_a_missing_package_and_another_broken_otherwise_are_both_named(monkeypatch):
    from fastp2p.optional_packages import MissingPackage, require_packages

    _importing(monkeypatch, {"tqdm": ModuleNotFoundError("No module named 'tqdm'", name="tqdm"),
                             "matplotlib": ImportError("libfreetype.so.6: cannot open")})
    with pytest.raises(MissingPackage) as raised:
        require_packages(("PIL", "tqdm", "matplotlib"), "train")
    assert str(raised.value) == (
        "tqdm is not installed: pip install 'fastp2p[train]'; matplotlib is installed but "
        "cannot be imported (libfreetype.so.6: cannot open): pip install --force-reinstall "
        "--no-deps matplotlib")
