"""The layers of DESIGN.md §2, read from the source: every import of every module of fastp2p/
and kernels/ (function-level imports included, since those are the ones that close loops at
run time) points down the arrows ``cli -> train -> nn -> ops -> (kernels | _C | reference)``;
``data`` serves ``train`` and ``cli``; ``bench`` may use ``train``. Nothing imports upward.
The top-level utility modules (``fastp2p/option_types.py``, ``fastp2p/cpu_info.py``, ...) are
the ``util`` layer under ``ops`` and ``data``: they import only each other."""
import ast
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)

# Layer -> the fastp2p layers it must never import (its own layer and those below are allowed).
FORBIDDEN = {
    "reference": {"kernels", "_C", "ops", "nn", "data", "train", "bench", "cli", "info"},
    "kernels": {"reference", "_C", "ops", "nn", "data", "train", "bench", "cli", "info"},
    "ops": {"nn", "data", "train", "bench", "cli", "info"},
    "nn": {"data", "train", "bench", "cli", "info"},
    "data": {"nn", "train", "bench", "cli", "info"},
    "train": {"bench", "cli", "info"},
    "bench": {"cli", "info"},
    "util": {"reference", "kernels", "_C", "ops", "nn", "data", "train", "bench", "cli", "info"},
}
# The top-level modules that are no layer of their own: the entry points (cli, info) sit above
# every layer, and the package root counts as nn (below).
NOT_UTILITIES = {"__init__", "__main__", "cli", "info"}
UTILITIES = {path.stem for path in (CHECKOUT / "fastp2p").glob("*.py")} - NOT_UTILITIES
# Third-party packages a layer may import beside the standard library (None: any).
THIRD_PARTY = {"reference": {"torch"}, "kernels": {"torch", "triton"}}


def _modules():
    """(layer, path) of every Python file in the layers above."""
    for path in sorted((CHECKOUT / "fastp2p").rglob("*.py")):
        parts = path.relative_to(CHECKOUT / "fastp2p").parts
        if len(parts) > 1 and parts[0] in FORBIDDEN:
            yield parts[0], path
        elif len(parts) == 1 and path.stem in UTILITIES:
            yield "util", path
    for path in sorted((CHECKOUT / "kernels").rglob("*.py")):
        yield "kernels", path


def _imported(path: Path):
    """Every absolute module name the file imports, anywhere in it."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "fastp2p":  # from fastp2p import _C / reference ...
                yield from (f"fastp2p.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; use absolute fastp2p.* imports")


def _violations(layer, path):
    allowed_third_party = THIRD_PARTY.get(layer)
    for name in _imported(path):
        parts = name.split(".")
        if parts[0] == "fastp2p":
            # The package root re-exports the nn modules: it counts as nn.
            target = parts[1] if len(parts) > 1 else "nn"
            target = "util" if target in UTILITIES else target
            if target in FORBIDDEN[layer] or (
                    layer in THIRD_PARTY and target != layer):
                yield f"{layer} imports {name}"
        elif parts[0] == "kernels":
            yield f"{name}: import fastp2p.kernels, never the top-level 'kernels' (STYLE.md)"
        elif allowed_third_party is not None and parts[0] not in STDLIB | allowed_third_party:
            yield f"{layer} imports the third-party {name}"


@pytest.mark.parametrize("layer,path", list(_modules()),
                         ids=lambda v: str(v.relative_to(CHECKOUT)) if isinstance(v, Path) else v)
def test_imports_point_down_the_layers(layer, path):
    assert not list(_violations(layer, path))


def test_the_scan_sees_every_layer():
    layers = {layer for layer, _ in _modules()}
    assert layers == set(FORBIDDEN)


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(CHECKOUT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _import_graph():
    """fastp2p module -> the fastp2p modules it imports anywhere in it (``from a import b``
    counts as importing the module a.b where there is one, else a)."""
    paths = {_module_name(path): path for path in (CHECKOUT / "fastp2p").rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                             else node.module for a in node.names}
        graph[name] = (imported & paths.keys()) - {name}
    return graph


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def _import_cycles():
    """The sets of modules that import each other in a loop (strongly connected components)."""
    graph = _import_graph()
    reaches = {name: _reachable(graph, name) for name in graph}
    return {frozenset({name} | {other for other in reaches[name] if name in reaches[other]})
            for name in graph if name in reaches[name]}


# Loops there today (through a package's __init__, or closed by a function-level import); a new
# one fails the test below. Remove an entry when its loop is broken (by a module both import, as
# fastp2p.nn.safe_load broke fastp2p.nn.checkpoint <-> fastp2p.nn.checkpoint_sets).
KNOWN_CYCLES = {
    frozenset({"fastp2p.nn", "fastp2p.nn.compat", "fastp2p.nn.discriminators",
               "fastp2p.nn.unet"}),
}


def test_no_new_import_cycles():
    """A function-level import that closes a loop hides it from the layer check above (both
    modules are in one layer) and from Python until the function runs."""
    new = [sorted(cycle) for cycle in _import_cycles() - KNOWN_CYCLES]
    assert not new, f"modules that import each other in a loop: {new}"


def test_the_reference_layer_names_the_gan_modes_the_ops_define():
    """fastp2p.reference imports only torch, so it spells the GAN modes itself: the same ones."""
    from fastp2p.ops.definitions import GAN_MODES
    from fastp2p.reference.losses import GAN_MODES as REFERENCE_GAN_MODES
    assert REFERENCE_GAN_MODES == GAN_MODES
