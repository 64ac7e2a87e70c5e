"""STYLE.md, Tests: a test that needs a GPU carries the ``cuda`` mark, which conftest turns into
a skip without one; nothing in tests/ calls ``torch.cuda`` while a file is imported or collected
(a decorator, a skipif condition, a module-level ``pytestmark``). A skipif on
``torch.cuda.is_available()`` alone hid a GPU test from benchmarks/gpu_check.sh, which selects
the GPU tests with ``-m cuda``: on a GPU it was never run."""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_torch_cuda(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "cuda"
            and isinstance(node.value, ast.Name) and node.value.id == "torch")


def _run_at_import(tree: ast.Module):
    """The nodes Python evaluates when it imports the file: all but the bodies of functions
    (their decorators and default values included)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += node.decorator_list + node.args.defaults
            todo += [default for default in node.args.kw_defaults if default is not None]
        elif not isinstance(node, ast.Lambda):
            yield node
            todo += ast.iter_child_nodes(node)


def _torch_cuda_at_import():
    for path in sorted(TESTS.rglob("*.py")):
        for node in _run_at_import(ast.parse(path.read_text(), str(path))):
            if _is_torch_cuda(node):
                yield f"{path.relative_to(TESTS)}:{node.lineno}"


def test_no_torch_cuda_call_at_import_or_in_decorators():
    found = list(_torch_cuda_at_import())
    assert not found, ("torch.cuda at import or in a decorator (use @pytest.mark.cuda, which "
                       f"conftest turns into a skip without a GPU): {found}")
