"""A benchmarks/ script's ``--help`` gives its docstring's whole first paragraph: the first
line alone stopped mid-sentence ("... against cuDNN + today's")."""
import pytest

from helpers.benchmark_scripts import load_benchmark_script


def _words(text: str) -> str:
    return " ".join(text.split())  # argparse re-wraps the description


@pytest.mark.parametrize("name", ["conv_layer_timing", "count_norm_act_fwd_launches"])
def test_help_gives_the_whole_first_paragraph(name, capsys):
    script = load_benchmark_script(name)
    with pytest.raises(SystemExit) as done:
        script.main(["--help"])
    assert done.value.code == 0
    first_paragraph = script.__doc__.split("\n\n")[0]
    assert _words(first_paragraph) in _words(capsys.readouterr().out)
