"""Build fastp2p. A pure-Python install always succeeds; kernels/ ships as fastp2p.kernels."""
from setuptools import find_packages, setup

PACKAGES = find_packages(include=["fastp2p", "fastp2p.*"]) + ["fastp2p.kernels"]

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
        "data": ["pillow>=10", "tqdm>=4.60", "scikit-image>=0.22"],
        "train": ["pillow>=10", "tqdm>=4.60", "matplotlib>=3.7", "scikit-image>=0.22"],
        "bench": ["matplotlib>=3.7", "pytest-benchmark>=4"],
        # Everything the test suite exercises; triton and numpy pinned (the interpreter's
        # behaviour is what CI proves the kernels with).
        "test": ["pytest>=8", "pytest-benchmark>=4", "triton==3.9.0", "numpy>=2,<3",
                 "pillow>=10", "tqdm>=4.60", "matplotlib>=3.7", "scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["fastp2p=fastp2p.cli:main"]},
)
