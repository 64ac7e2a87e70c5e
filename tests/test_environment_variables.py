"""STYLE.md: every environment variable in one table of the README, and each of fastp2p's own
spelled in one module, so a reader and a writer of it cannot drift apart (the benchmark's PDL
peer set FASTP2P_PDL through a second copy of the name that kernels/pdl.py reads)."""
import ast
import re
from collections import defaultdict
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
OWN_VARIABLE = re.compile(r"FASTP2P_[A-Z0-9_]+")


def _own_variables_in_code():
    """FASTP2P_* name -> the modules of fastp2p/ and kernels/ that spell it as a whole string."""
    spelled_in = defaultdict(set)
    for path in [*(CHECKOUT / "fastp2p").rglob("*.py"), *(CHECKOUT / "kernels").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and OWN_VARIABLE.fullmatch(node.value)):
                spelled_in[node.value].add(str(path.relative_to(CHECKOUT)))
    return spelled_in


def _gpu_check_variables():
    """The variables benchmarks/gpu_check.sh reads with a default: ${NAME:-default}."""
    script = (CHECKOUT / "benchmarks" / "gpu_check.sh").read_text()
    return set(re.findall(r"\$\{([A-Z_]+):-", script))


def _readme_table():
    """The names in the first column of the README's table of environment variables."""
    readme = (CHECKOUT / "README.md").read_text()
    section = readme.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    first_columns = (line.split("|")[1] for line in section.splitlines() if line.startswith("|"))
    return {name for column in first_columns for name in re.findall(r"`([A-Z0-9_]+)`", column)}


def test_each_own_variable_is_spelled_in_one_module():
    spelled_more_than_once = {name: sorted(modules)
                              for name, modules in _own_variables_in_code().items()
                              if len(modules) > 1}
    assert not spelled_more_than_once


def test_the_readme_table_lists_every_variable_read():
    read = set(_own_variables_in_code()) | _gpu_check_variables()
    assert read - _readme_table() == set()
