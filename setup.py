"""Build fastp2p. A pure-Python install always succeeds; kernels/ ships as fastp2p.kernels."""
from setuptools import setup

PACKAGES = ["fastp2p", "fastp2p.reference", "fastp2p.nn", "fastp2p.ops", "fastp2p.kernels"]

setup(
    name="fastp2p",
    version="0.1.0",
    description="Fast pix2pix: fused kernels and a CUDA-graph training step, drop-in for the "
                "reference PyTorch implementation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"fastp2p.kernels": "kernels"},
    # A range that an installed CPU build satisfies: pip then installs no CUDA torch on top of it.
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "triton": ["triton>=3.2"],
        "test": ["pytest>=8", "triton==3.9.0", "numpy>=2,<3"],
    },
    entry_points={"console_scripts": ["fastp2p=fastp2p.cli:main"]},
)
