"""fastp2p: fast pix2pix. Drop-in U-Net / PatchGAN / GANLoss for the reference implementation.

The public names are imported on first use (PEP 562), so that ``import fastp2p`` -- and with it
the ``fastp2p`` command's parser and ``--help`` -- does not wait for torch and Triton, and a
Ctrl-C while a command loads them is the command's to report. The custom ops
(``torch.ops.fastp2p.*``, e.g. for a saved ``torch.export`` program) are registered by
``import fastp2p.ops``, which every network imports.
"""
# the one place the version is written: setup.py reads this line (as text)
__version__ = "0.1.0"


def _refuse_uninstalled_checkout() -> None:
    """ImportError saying what to do when this is the source checkout's ``fastp2p/`` (a
    setup.py beside it: Python run from the checkout puts it first on the path) and no install
    maps the checkout's ``kernels/`` to ``fastp2p.kernels``: the networks would otherwise fail
    on first use with a bare "No module named 'fastp2p.kernels'". An installed package has no
    setup.py beside it, so it pays one stat."""
    import os

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(checkout, "setup.py")):
        return
    import importlib.util
    import shlex

    if importlib.util.find_spec(f"{__name__}.kernels") is None:
        raise ImportError(f"fastp2p is imported from its source checkout {checkout} without "
                          "being installed (its kernels/ folder becomes fastp2p.kernels on "
                          f"install): run `pip install -e {shlex.quote(checkout)}`, or run "
                          "from outside the checkout to use an installed fastp2p")


_refuse_uninstalled_checkout()
del _refuse_uninstalled_checkout   # not a public name (dir(fastp2p))

_PUBLIC = {"GANLoss": "fastp2p.nn", "PatchDiscriminator": "fastp2p.nn",
           "PixelDiscriminator": "fastp2p.nn", "UNet": "fastp2p.nn", "graphed": "fastp2p.nn",
           "init_weights": "fastp2p.reference.init"}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name):
    import importlib  # here, not at module level: dir(fastp2p) lists public names only

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:  # a subpackage used as an attribute (fastp2p.nn.UNet after a bare import fastp2p)
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_PUBLIC})
