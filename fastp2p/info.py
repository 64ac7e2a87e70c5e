"""``fastp2p info``: versions, and what this machine can run."""
import argparse


def register(commands) -> None:
    parser = commands.add_parser("info", help="print versions and available backends",
                                 description="Print fastp2p, torch, triton and CUDA versions.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import fastp2p

    print(f"fastp2p {fastp2p.__version__}")
    print(f"torch   {torch.__version__}")
    try:
        import triton
        print(f"triton  {triton.__version__}")
    except ImportError:
        print("triton  not installed (fused Triton kernels unavailable; reference math is used)")
    if torch.cuda.is_available():
        print(f"cuda    {torch.version.cuda} on {torch.cuda.get_device_name()}")
    else:
        print("cuda    no GPU visible")
    return 0
