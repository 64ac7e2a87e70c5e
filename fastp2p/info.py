"""``fastp2p info``: versions, and what this machine can run."""
import argparse


def register(commands) -> None:
    parser = commands.add_parser("info", help="print versions and available backends",
                                 description="Print fastp2p, torch, triton and CUDA versions, "
                                             "and what fastp2p._C was built with.")
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
    print(f"C++     {_extension_status()}")
    return 0


def _extension_status() -> str:
    """Whether fastp2p._C is there, with its CUDA kernels or why not."""
    from fastp2p.ops.backends import cpp as cpp_backend

    reason = cpp_backend.unavailable_reason()
    if reason:
        return f"fastp2p._C unavailable ({reason}); the reference math runs on CPUs"
    if cpp_backend.cuda_available():
        return "fastp2p._C with CPU and CUDA kernels"
    return f"fastp2p._C with CPU kernels; no CUDA kernels ({cpp_backend.cuda_unavailable_reason()})"
