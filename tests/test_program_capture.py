"""The drop-in networks under torch's program capturers, as the reference modules go through
them: torch.fx and torch.compile / torch.export of the U-Net record the reference forward's
torch ops; an eval PatchGAN compiles whole under no_grad (no BatchNorm folding while traced);
every network exports; torch.jit.script is refused in one line that names torch.export first."""
import copy
import functools
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch

import fastp2p
from fastp2p.nn import tracing
from helpers.tolerances import assert_close


def _unet():
    torch.manual_seed(0)
    return fastp2p.UNet(3, 3, 5, ngf=4, norm="batch").eval()


def _patchgan():
    torch.manual_seed(0)
    return fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2, norm="batch").eval()


def _pixelgan():
    torch.manual_seed(0)
    return fastp2p.PixelDiscriminator(6, ndf=4).eval()


def _images(channels=3):
    return torch.rand(2, channels, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("make, channels", [(_unet, 3), (_patchgan, 6), (_pixelgan, 6)])
def test_fx_symbolic_trace_records_the_reference_forward(make, channels):
    net = make().eval()
    traced = torch.fx.symbolic_trace(net)
    x = _images(channels)
    with torch.no_grad():
        assert_close(traced(x), net(x), 1e-6, "fx graph")


@pytest.mark.parametrize("make, channels", [(_unet, 3), (_patchgan, 6)])
def test_compile_whole_graph_under_no_grad(make, channels):
    net, x = make(), _images(channels)
    with torch.no_grad():
        expected = net(x)
        torch._dynamo.reset()
        compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
        assert_close(compiled(x), expected, 1e-5, "compiled")


@pytest.mark.parametrize("make, channels", [(_unet, 3), (_patchgan, 6), (_pixelgan, 6)])
@pytest.mark.parametrize("train", [False, True], ids=["eval_no_grad", "train"])
def test_export_without_a_deprecation_warning(make, channels, train):
    """torch.export, which the refusal of torch.jit.script names first, works on each network
    on this torch without a word of deprecation (torch 2.14 deprecates torch.jit.trace, which
    it named first before, with a FutureWarning)."""
    net, x = make().train(train), _images(channels)
    with warnings.catch_warnings(record=True) as caught, torch.set_grad_enabled(train):
        warnings.simplefilter("always")
        program = torch.export.export(copy.deepcopy(net), (x,))
        assert_close(program.module()(x), net(x), 1e-5, "exported")
    assert [str(w.message) for w in caught
            if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []


@pytest.mark.parametrize("make", [_unet, _patchgan])
def test_jit_script_is_refused_in_one_line_naming_torch_export_first(make):
    with pytest.raises(RuntimeError, match=r"^torch.jit.script cannot compile fastp2p\.\w+ "
                                           r"[^;]*; use torch.export or torch.compile[^\n]*"
                                           r"torch.jit.trace it[^\n]*$"):
        torch.jit.script(make())


_FORWARDS = ("import torch, fastp2p\n"
             "fastp2p.UNet(3, 3, 5, ngf=4).train()(torch.rand(1, 3, 32, 32))\n"
             "with torch.no_grad():\n"
             "    fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2).eval()("
             "torch.rand(1, 6, 32, 32))\n")


# torch 2.14's torch.fx: the tracing flag a thread-local behind _get_is_fx_tracing, and no
# _is_fx_tracing_flag (every forward raised AttributeError there)
_TORCH_2_14_FX = ("import torch.fx._symbolic_trace as symbolic_trace\n"
                  "vars(symbolic_trace).pop('_is_fx_tracing_flag', None)\n"
                  "if not hasattr(symbolic_trace, '_get_is_fx_tracing'):\n"
                  "    symbolic_trace._get_is_fx_tracing = lambda: False\n")


@pytest.mark.parametrize("setup", ["", "import torch\ndel torch.compiler.is_exporting\n",
                                   _TORCH_2_14_FX],
                         ids=["this torch", "no is_exporting", "torch 2.14's fx flag"])
def test_forwards_print_nothing_and_need_no_newer_torch(tmp_path, setup):
    """No torch log line per process (is_fx_tracing() logs one), and no API newer than the
    torch >= 2.8 fastp2p installs with. Run from tmp_path: the installed package."""
    run = subprocess.run([sys.executable, "-c", setup + _FORWARDS], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stderr == "", run.stderr


@pytest.mark.parametrize("layout", ["module global (torch < 2.14)", "thread-local (torch 2.14)"])
def test_the_fx_tracing_flag_is_read_where_this_torch_keeps_it_at_each_call(layout):
    flag = {"value": False}
    if layout.startswith("module global"):
        symbolic_trace = SimpleNamespace(_is_fx_tracing_flag=False)
        set_flag = functools.partial(setattr, symbolic_trace, "_is_fx_tracing_flag")
    else:
        symbolic_trace = SimpleNamespace(_get_is_fx_tracing=lambda: flag["value"])
        set_flag = functools.partial(flag.__setitem__, "value")
    read = tracing._tracing_flag_reader(symbolic_trace)
    assert read() is False
    set_flag(True)
    assert read() is True
