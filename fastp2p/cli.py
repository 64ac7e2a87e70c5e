"""The ``fastp2p`` command (also ``python -m fastp2p``)."""
import argparse
import sys


def _info(args: argparse.Namespace) -> int:
    """Print versions and what this machine can run."""
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


def build_parser() -> argparse.ArgumentParser:
    import fastp2p

    parser = argparse.ArgumentParser(
        prog="fastp2p",
        description="Fast pix2pix: train, test and benchmark conditional-GAN image translation.",
    )
    parser.add_argument("--version", action="version", version=f"fastp2p {fastp2p.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="print versions and available backends")
    info.set_defaults(run=_info)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
