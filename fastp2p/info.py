"""``fastp2p info``: versions, and which backend the fused ops use on each device, and why."""
import argparse
import importlib


def register(commands) -> None:
    parser = commands.add_parser("info", help="print versions and the backend of each device",
                                 description="Print fastp2p's version and build fingerprint, "
                                             "torch, triton and CUDA versions, "
                                             "what fastp2p._C was built with, and, for the CPU "
                                             "and each visible GPU, which backend the fused "
                                             "ops (norm-act, losses) will use and why, and "
                                             "how CPU inference runs its convolutions.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fastp2p.stops_deferred import import_torch
    import_torch("torch")   # a memory limit too low for it is one line, not a traceback
    import torch

    from fastp2p.build_fingerprint import version_line

    print(version_line())
    print(f"torch   {torch.__version__}")
    try:
        import triton
        print(f"triton  {triton.__version__}")
    except ImportError:
        print("triton  not installed (the Triton kernels need it: pip install 'fastp2p[triton]')")
    if torch.cuda.is_available():
        print(f"cuda    {torch.version.cuda} on {torch.cuda.get_device_name()}")
    else:
        print("cuda    no GPU visible")
    print(f"C++     {_extension_status()}")
    print("fused ops (norm-act, losses) run on:")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print(f"  {device:5s} {_backend_line(torch.device(device))}")
    print(_convolutions_line())
    return 0


def _convolutions_line() -> str:
    """How CPU float32 inference runs the convolutions; where the ops refuse a setting, their
    own error (as for FASTP2P_BACKEND) under a label of its own: FASTP2P_CONV chooses the
    convolutions of training and of every device too, not only of CPU inference."""
    try:
        return f"CPU float32 inference convolutions: {_cpu_inference_line()}"
    except ValueError as error:
        return f"convolution settings: error: {error}"


def _cpu_inference_line() -> str:
    """How the U-Net's convolutions run in CPU float32 inference (fastp2p.ops.onednn_packed,
    fastp2p.ops.conv_transpose, or the fused convolution that FASTP2P_CONV=fused asks for),
    and why. ValueError for a setting the ops refuse."""
    fused = _fused_convolution_line()
    return fused if fused is not None else _packed_line()


def _fused_convolution_line():
    """With FASTP2P_CONV=fused, what runs the convolutions; None where today's forward runs
    them. ValueError from the conv choice itself: a FASTP2P_CONV it refuses, or =fused where
    no backend runs the fused convolution on the CPU (asked of a float32 layer, as a
    network's forward asks it)."""
    import torch

    from fastp2p.ops.backends import conv_choice

    conv_choice.check_setting(torch.device("cpu"))
    if conv_choice.forced() != "fused":
        return None
    return (f"the fused convolution (Triton kernels through the interpreter; slow), as "
            f"{conv_choice.ENV_VAR}=fused says")


def _packed_line() -> str:
    """oneDNN with packed weights, and the transposed convolutions' form; ValueError from
    fastp2p.ops.conv_transpose for a FASTP2P_CPU_DECONV it refuses."""
    from fastp2p.nn.folding import MAX_STAND_INS
    from fastp2p.ops import onednn_packed
    from fastp2p.ops import remembered_forms
    from fastp2p.ops.conv_transpose import CPU_FORMS, FORM_ENV_VAR, MEASURE_ONLY, forced_form

    if not onednn_packed.available():
        return ("oneDNN, weights reordered on every call (this torch build lacks oneDNN or "
                "torch.ops.mkldnn's packed convolution ops)")
    forced = forced_form()  # ValueError: the value's error, from the code that reads it
    if forced in CPU_FORMS:
        form = f"{forced}, as {FORM_ENV_VAR} says"
    else:
        form = ("oneDNN's deconvolution, four phases as one convolution, or GEMM + col2im, "
                "measured per layer on the first call")
        if forced == MEASURE_ONLY:
            form += f" (not remembered: {FORM_ENV_VAR}={MEASURE_ONLY})"
        else:
            why_not = remembered_forms.why_not_remembered()
            form += (f" and remembered in {remembered_forms.path()}" if why_not is None
                     else f" (not remembered: {why_not})")
    return (f"oneDNN with weights packed once per input size (up to {MAX_STAND_INS} a layer); "
            f"transposed convolutions: {form}")


def _extension_status() -> str:
    """Whether fastp2p._C is there: its CPU kernels, threaded by OpenMP or on one thread (the
    compiler had no -fopenmp), and its CUDA kernels or why not."""
    from fastp2p.ops.backends import cpp as cpp_backend

    reason = cpp_backend.unavailable_reason()
    if reason:
        return f"fastp2p._C not available ({reason})"
    from fastp2p import _C

    cpu = "CPU kernels " + ("(OpenMP)" if _C.with_openmp else "(no OpenMP: one thread)")
    if cpp_backend.cuda_available():
        return f"fastp2p._C with {cpu} and CUDA kernels"
    return f"fastp2p._C with {cpu}; no CUDA kernels ({cpp_backend.cuda_unavailable_reason()})"


def _backend_line(device) -> str:
    """The dispatcher's own choice for ``device`` (fastp2p.ops.backend_name_for), explained."""
    from fastp2p.ops import backend_name_for
    from fastp2p.ops.backends import ENV_VAR, backend_forced, reference_fallbacks
    from fastp2p.ops.backends import cpp as cpp_backend

    try:
        name = backend_name_for(device)
    except ValueError as err:
        return f"none: {err}"
    if backend_forced():
        fallbacks = reference_fallbacks(device)
        borrowed = f"; the reference's {', '.join(fallbacks)}" if fallbacks else ""
        return f"{name}: forced by {ENV_VAR}={name}{borrowed}"
    if name == "cpp":  # fastp2p.ops.norm_act_torch says when training leaves the kernels
        return ("cpp: the CPU kernels of fastp2p._C; float32 training runs PyTorch's own "
                "norm ops instead (measured faster there)")
    if name == "triton" and device.type == "cpu":
        return "triton: the Triton kernels through the interpreter (TRITON_INTERPRET=1; slow)"
    if name == "triton":
        cuda_cpp = ("; the CUDA kernels of fastp2p._C on the norm-act shapes of the measured "
                    "choice table" if cpp_backend.cuda_available() else "")
        return f"triton: the Triton kernels{cuda_cpp}"
    if device.type == "cpu":
        why = f"fastp2p._C not available ({cpp_backend.unavailable_reason()})"
    else:
        why = _why_no_triton()
    return f"reference: plain PyTorch math, because {why}"


def _why_no_triton() -> str:
    try:
        importlib.import_module("triton")
    except ImportError:
        return "triton is not installed (pip install 'fastp2p[triton]')"
    try:
        importlib.import_module("fastp2p.ops.backends.triton")
    except ImportError as err:
        return f"fastp2p's Triton kernels did not import ({err})"
    return "the Triton backend reports itself unavailable on this machine"
