"""What a command takes from a shared module brings nothing heavy with it: `fastp2p test` takes
its stop handling and its loader-failure line without the training loop (fastp2p.train.trainer),
and those modules import neither numpy nor torch; nor does the module that reads and checks a
pack's index (`fastp2p pack --verify`), kept apart from the reader of its pairs, nor train's
checks before torch loads. Read from the source (function-level imports included) and checked
in a fresh interpreter. A U-Net built and run eagerly does not import torch._dynamo, and
`fastp2p pack` packs without torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.train_helpers import write_aligned_dataset

CHECKOUT = Path(__file__).resolve().parents[1]

# module -> modules it must not import, itself or through what it imports
LIGHT = {
    "fastp2p.train.stop_requests": ("numpy", "torch", "fastp2p.train.trainer"),
    "fastp2p.train.loader_failures": ("numpy", "torch", "fastp2p.train.trainer"),
    "fastp2p.data.packed_index": ("numpy", "torch", "fastp2p.data.packed"),
    "fastp2p.train.train_before_torch": ("numpy", "torch"),
    "fastp2p.train.translate_before_torch": ("numpy", "torch"),
    "fastp2p.torchrun_variables": ("numpy", "torch"),
}


def _imported(path: Path) -> set:
    """Every absolute module name the file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _run_python(code: str, folder: Path, timeout: int) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter in ``folder`` (outside the checkout, whose fastp2p/
    would shadow the installed package), its output captured as text."""
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def test_fastp2p_test_does_not_import_the_training_loop():
    # translate_command and the modules it keeps its parts in (its run folder lookup, output
    # names, checks before torch, data notes, results folder, triplets, checkpoint's point)
    imported = set().union(*(_imported(CHECKOUT / "fastp2p" / "train" / f"{name}.py")
                             for name in ("translate_command", "run_folder_lookup",
                                          "result_names", "translate_before_torch",
                                          "translate_data_notes", "results_folder",
                                          "triplet_writing", "saved_point")))
    assert "fastp2p.train.trainer" not in imported
    assert {"fastp2p.train.stop_requests", "fastp2p.train.loader_failures"} <= imported


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_a_light_module_imports_nothing_heavy(module, tmp_path):
    code = (f"import sys\nimport {module}\n"
            f"print(sorted(set({LIGHT[module]!r}) & set(sys.modules)))\n")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    done = _run_python(code, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_unet_built_and_run_eagerly_leaves_torch_dynamo_unimported(tmp_path):
    """fastp2p.nn keeps its optimizer-step hook out of torch.compile's tracing without importing
    torch._dynamo (seconds, and most of the import's time) until the hook first runs."""
    code = ("import sys, torch, fastp2p\n"
            "net = fastp2p.UNet(3, 3, 5, ngf=4, norm='batch').eval()\n"
            "with torch.no_grad():\n"
            "    net(torch.randn(1, 3, 32, 32))  # folds its batch norms: registers the hook\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = _run_python(code, tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_torchs_private_lazy_disable_the_hook_is_kept_from_compile_on_first_call(
        tmp_path):
    """torch._disable_dynamo is internal-only: a torch without it failed importing folding
    with an AttributeError. torch.compiler.disable is then applied on the hook's first call,
    still without importing torch._dynamo at import."""
    code = ("import importlib, sys, torch\n"
            "from fastp2p.nn import folding\n"
            # torch's own modules use the private name as they load: gone for folding's alone
            "torch_lazy_disable = torch._disable_dynamo\n"
            "del torch._disable_dynamo\n"
            "folding = importlib.reload(folding)\n"
            "torch._disable_dynamo = torch_lazy_disable\n"
            "print('torch._dynamo' in sys.modules)\n"
            "watched = torch.nn.Parameter(torch.randn(4))\n"
            "folding.see_fused_steps_on([watched])\n"
            "optimizer = torch.optim.Adam([watched], lr=0.1, fused=True)\n"
            "watched.grad = torch.randn(4)\n"
            "optimizer.step()\n"
            "version = watched._version\n"
            "optimizer.step()\n"
            "print(watched._version - version, 'torch._dynamo' in sys.modules)\n")
    done = _run_python(code, tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert done.stdout.split() == ["False", "1", "True"], done.stdout


def test_fastp2p_pack_packs_without_importing_torch(tmp_path):
    """Packing decodes, resizes and writes uint8 pixels: torch's import (seconds, 80 % of a
    small pack's time) bought nothing."""
    write_aligned_dataset(tmp_path / "pairs", pairs=3, phases=("train",))
    code = ("import sys\n"
            "from fastp2p.cli import main\n"
            "code = main(['pack', 'pairs', 'packed', '--load_size', '16', '--workers', '1',\n"
            "             '--no-progress'])\n"
            "print(code, 'torch' in sys.modules)\n")
    done = _run_python(code, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 False", done.stdout
    assert (tmp_path / "packed" / "train" / "index.json").is_file()
