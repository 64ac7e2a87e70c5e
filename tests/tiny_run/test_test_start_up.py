"""`fastp2p test` loads every weight of its generator from the run's file, so it draws none:
the --init_type draw on the meta-device generator it checks the file against imported
torch._dynamo (2-3 s of a 6 s test, and triton with it) and computed nothing."""
import subprocess
import sys

from helpers.train_helpers import tiny_test_argv


def test_test_imports_torch_without_torch_dynamo(data, trained, tmp_path):
    argv = tiny_test_argv(data, trained, tmp_path / "results", "--num_test", "1")
    code = ("import sys\n"
            "from fastp2p.cli import main\n"
            f"code = main({argv!r})\n"
            "print(code, 'torch' in sys.modules, 'torch._dynamo' in sys.modules)\n")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 True False", done.stdout
