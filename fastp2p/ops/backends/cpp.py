"""The C++ backend: host launchers over the extension fastp2p._C (CPU kernels; CUDA ones when it
was built with nvcc).

The launchers follow ``contract.Backend`` (no autograd; the ops layer wraps them and has checked
every argument; the C++ ``CHECK_*`` macros stay as the last line of defence for direct calls
into the extension). The extension has no torch at build time, so tensors cross as (data
pointer, dtype code, sizes, strides, device) tuples; this module allocates the outputs and picks
a layout the kernels read with unit stride (channels-last or NCHW rows; anything else is copied
once). ``norm_act_fwd_plan`` builds the extension's NormActFwdPlan from those tuples once, and
its launches pass only data addresses (the ops layer keeps one per kind of inference call).

If the extension is missing (no compiler at install, a failed build), ``available()`` is False,
warns once with the reason, and the ops layer keeps to the reference math.
"""
import warnings
from pathlib import Path

import torch

from fastp2p.json_files import read_json
from fastp2p.ops.definitions import ACTIVATION_CODES, GAN_MODE_CODES, count_batch

NAME = "cpp"
# Storage dtypes the kernels compute exactly (float32 statistics and math).
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Storage dtypes and their codes in csrc/common/tensor_arg.h.
_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
# Statistics modes in csrc/common/norm_act_params.h.
_INSTANCE, _BATCH_TRAIN, _BATCH_EVAL, _NONE = 0, 1, 2, 3
_LOW32 = 0xFFFFFFFF
# Most bytes of GEMM output (cols) that conv_transpose2d_fwd holds at once.
_CONV_COLS_BYTES = 64 << 20
_BUILD_INFO = Path(__file__).resolve().parents[2] / "_C_build.json"

_extension = None
_reason = None
_warned = False


def _load():
    """Import fastp2p._C once; remember why not if it fails."""
    global _extension, _reason
    if _extension is None and _reason is None:
        try:
            from fastp2p import _C
            _extension = _C
        except ImportError as error:
            _reason = _missing_reason(error)
    return _extension


def _missing_reason(error: ImportError) -> str:
    try:
        info = read_json(_BUILD_INFO)
    except (OSError, ValueError):
        return (f"fastp2p._C cannot be imported ({error}) and the install left no build record: "
                "reinstall fastp2p with a C++17 compiler (pip install .) to build it")
    if not info.get("built"):
        return f"fastp2p._C was not built at install: {info.get('reason') or 'unknown reason'}"
    return f"fastp2p._C was built but cannot be imported: {error}"


def available() -> bool:
    """True when fastp2p._C imports; otherwise warns once with the reason."""
    global _warned
    if _load() is not None:
        return True
    if not _warned:
        _warned = True
        warnings.warn(f"fastp2p C++ backend unavailable, using the reference math: {_reason}",
                      RuntimeWarning, stacklevel=2)
    return False


def unavailable_reason() -> str:
    """Why the extension cannot be used ('' when it can)."""
    _load()
    return _reason or ""


def cuda_available() -> bool:
    """True when fastp2p._C was built with its CUDA kernels."""
    return _load() is not None and bool(_extension.with_cuda)


def cuda_unavailable_reason() -> str:
    """Why the CUDA kernels are missing ('' when they are built)."""
    if cuda_available():
        return ""
    if _extension is None:
        return unavailable_reason()
    try:
        info = read_json(_BUILD_INFO)
    except (OSError, ValueError):
        info = {}
    return info.get("cuda_reason") or ("fastp2p._C was built without CUDA (no nvcc at install, "
                                       "or FASTP2P_CUDA=0)")


# The launchers with CUDA kernels in the extension (the rest are CPU code).
_CUDA_LAUNCHERS = ("norm_act_fwd", "norm_act_bwd")


def launchers_on(device_type: str) -> tuple:
    """The launchers this build runs on ``device_type`` when FASTP2P_BACKEND=cpp forces the
    backend onto a device other than the CPU: norm-act on CUDA with a CUDA build, else none
    (the registry runs the reference's for the others)."""
    return _CUDA_LAUNCHERS if device_type == "cuda" and cuda_available() else ()


def _require():
    if not available():
        raise RuntimeError(f"the fastp2p C++ backend is unavailable: {_reason}")
    return _extension


# -- argument plumbing -----------------------------------------------------------------------
# These run on every call: attribute reads that skip torch.device objects (get_device() is -1 on
# the CPU, the index on CUDA) keep the launchers' overhead small next to small layers' kernels.
def _arg(t):
    return (t.data_ptr(), _DTYPE_CODES[t.dtype], tuple(t.shape), tuple(t.stride()), t.get_device())


def _optional_arg(t):
    return None if t is None else _arg(t)


def _statistics_arg(t):
    """A float32 contiguous statistics tensor ((N, C) or (C,)) as the 1-D vector the kernels see."""
    return (t.data_ptr(), _DTYPE_CODES[torch.float32], (t.numel(),), (1,), t.get_device())


def _check_device(x, what):
    """The one check of its own: what this build can run (the arguments were checked by the op)."""
    if x.is_cuda:
        if not cuda_available():
            raise ValueError(f"{what}: fastp2p._C was built without CUDA; expected a CPU tensor, "
                             f"got one on {x.device}")
    elif not x.is_cpu:
        raise ValueError(f"{what}: expected a CPU or CUDA tensor, got one on {x.device}")


def _fp32(t):
    """t itself when the kernels can read it (or update it in place) as it is: float32 and
    contiguous; else a float32 contiguous copy."""
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return t.detach().to(torch.float32).contiguous()


def _unit_stride_layouts(t):
    """(channels_ok, rows_ok): unit stride along C, along W (a size-1 dimension counts)."""
    return t.shape[1] == 1 or t.stride(1) == 1, t.shape[3] == 1 or t.stride(3) == 1


def _layout_of(x):
    """'channels_last' or 'rows' (NCHW): the unit-stride dimension the kernels iterate over."""
    channels_ok, rows_ok = _unit_stride_layouts(x)
    if channels_ok and (not rows_ok or x.shape[1] >= x.shape[3]):
        return "channels_last"
    return "rows" if rows_ok else None


def _fits(t, layout):
    channels_ok, rows_ok = _unit_stride_layouts(t)
    return channels_ok if layout == "channels_last" else rows_ok


def _empty_in(layout, like):
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return torch.empty(like.shape, dtype=like.dtype, device=like.device,
                       memory_format=memory_format)


def _conform(t, layout):
    """t itself when the kernels can read it in `layout`, else a copy in that layout."""
    if _fits(t, layout):
        return t
    copy = _empty_in(layout, t)
    copy.copy_(t)
    return copy


def _destination(out, out_channel_offset, x, layout):
    """The kernel's destination: (the argument of out[:, offset:offset + C], None) when that
    slice can be written in ``layout`` as it is (described by its address, without building a
    view); else (a staging tensor's argument, (the slice, the staging tensor)) to copy back."""
    batch, out_channels, height, width = out.shape
    channels, strides = x.shape[1], out.stride()
    if out_channel_offset < 0 or out_channel_offset + channels > out_channels:
        raise ValueError(f"channels [{out_channel_offset}, {out_channel_offset + channels}) do "
                         f"not fit a destination with {out_channels} channels")
    fits = (channels == 1 or strides[1] == 1) if layout == "channels_last" else (
        width == 1 or strides[3] == 1)
    if fits:  # the slice's shape and strides, as the extension checks them against x's
        address = out.data_ptr() + out_channel_offset * strides[1] * out.element_size()
        return (address, _DTYPE_CODES[out.dtype], (batch, channels, height, width), strides,
                out.get_device()), None
    staging = _empty_in(layout, x)
    return _arg(staging), (out.narrow(1, out_channel_offset, channels), staging)


def _stats_mode(norm, training, running_mean):
    if norm == "instance":
        return _INSTANCE
    if norm == "batch":
        return _BATCH_TRAIN if training or running_mean is None else _BATCH_EVAL
    return _NONE


def _rng(dropout_p, seed, offset, device):
    """(p, seed32, offset32, seed_ptr, offset_ptr). seed / offset are Python ints, or (for CUDA
    graph replay) int64 tensors on x's device that the kernels read when they run."""
    if not isinstance(seed, torch.Tensor):
        return float(dropout_p), seed & _LOW32, offset & _LOW32, 0, 0
    if device.type == "cpu":  # read now: the CPU kernel runs synchronously
        return float(dropout_p), int(seed.item()) & _LOW32, int(offset.item()) & _LOW32, 0, 0
    if seed.device != device or offset.device != device:
        raise ValueError(f"for CUDA tensors, seed and offset tensors must be on {device}, got "
                         f"{seed.device} and {offset.device}")
    return float(dropout_p), 0, 0, seed.data_ptr(), offset.data_ptr()


def _device_extras(x, workspace_floats):
    """(stream, workspace tensor) for a CUDA launch; (0, None) on the CPU. The caller holds the
    workspace until the launch: an argument tuple (``_arg``) holds only its address."""
    if not x.is_cuda:
        return 0, None
    stream = torch.cuda.current_stream(x.device).cuda_stream
    floats = workspace_floats()
    return stream, torch.empty(max(floats, 1), dtype=torch.float32, device=x.device)


# -- norm-act ----------------------------------------------------------------------------------
def norm_act_fwd(x, weight, bias, running_mean, running_var, out, out_channel_offset, *, norm,
                 training, momentum, eps, activation, slope, dropout_p, seed, offset,
                 num_batches_tracked=None):
    """Write dropout(act(norm(x) * weight + bias)) into ``out[:, offset:offset + C]``.

    Returns float32 (mean, rstd): (N, C) for instance norm, (C,) for batch norm (the running
    ones in eval), empty for no norm. Batch norm in training updates the running stats in place
    like nn.BatchNorm2d (momentum, unbiased variance) and adds 1 to ``num_batches_tracked`` (a
    PyTorch op: the extension's kernels do not count).
    """
    C_ext = _extension or _require()
    if not x.is_cpu:
        _check_device(x, "norm_act")
    n, channels, height, width = x.shape
    # (One value per norm group, as in a 1x1 instance norm, is rejected by the extension itself,
    # which divides by count - 1 for the running variance: so it guards direct callers too.)
    stats = _stats_mode(norm, training, running_mean)
    dropout_p, seed32, offset32, seed_ptr, offset_ptr = _rng(dropout_p, seed, offset, x.device)
    activation_code = ACTIVATION_CODES[activation]

    layout = _layout_of(x)
    if layout is None:
        layout, x = "channels_last", _conform(x, "channels_last")
    destination, staged = _destination(out, out_channel_offset, x, layout)
    # Float32 copies where the vectors are not float32 contiguous, held in locals until the
    # kernel has run (the argument tuples hold only addresses). Running stats are updated in
    # place: through such copies, copied back below.
    weight32, bias32 = _fp32(weight), _fp32(bias)
    running = [_fp32(running_mean), _fp32(running_var)]
    if stats == _NONE:  # no statistics (new_empty: cheaper than torch.empty with a device)
        mean, rstd = x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)
    else:
        groups = (n, channels) if stats == _INSTANCE else (channels,)
        mean = torch.empty(groups, dtype=torch.float32, device=x.device)
        rstd = torch.empty(groups, dtype=torch.float32, device=x.device)
    stream, workspace = _device_extras(
        x, lambda: C_ext.norm_act_fwd_workspace_floats(n, channels, height, width, stats))
    C_ext.norm_act_fwd(_arg(x), _optional_arg(weight32), _optional_arg(bias32),
                       _optional_arg(running[0]), _optional_arg(running[1]), destination,
                       None if stats == _NONE else _statistics_arg(mean),
                       None if stats == _NONE else _statistics_arg(rstd), stats, float(momentum),
                       float(eps), activation_code, float(slope), dropout_p, seed32, offset32,
                       seed_ptr, offset_ptr, torch.get_num_threads(), stream,
                       _optional_arg(workspace))
    if staged is not None:
        out_slice, staging = staged
        with torch.no_grad():
            out_slice.copy_(staging)
    if stats == _BATCH_TRAIN and running_mean is not None:
        with torch.no_grad():
            for target, updated in zip((running_mean, running_var), running):
                if target is not updated:
                    target.copy_(updated)
    count_batch(num_batches_tracked, norm, training, running_mean)
    return mean, rstd


def norm_act_fwd_plan(x, weight, bias, running_mean, running_var, out, out_channel_offset, *,
                      norm, training, momentum, eps, activation, slope, dropout_p, statistics):
    """norm_act_fwd for repeated calls on tensors like these: the extension's NormActFwdPlan
    checks the geometry once, and each call passes only addresses. CPU tensors that the
    kernels read as they are (a unit-stride layout, a destination slice written in place,
    float32 contiguous vectors); None otherwise (norm_act_fwd copies what does not fit)."""
    C_ext = _extension or _require()
    layout = _layout_of(x)
    if not x.is_cpu or layout is None:
        return None
    destination, staged = _destination(out, out_channel_offset, x, layout)
    vectors = (weight, bias, running_mean, running_var)
    if staged is not None or any(t is not None and _fp32(t) is not t for t in vectors):
        return None
    stats = _stats_mode(norm, training, running_mean)
    groups = None if stats == _NONE else ((x.shape[0], x.shape[1]) if stats == _INSTANCE
                                          else (x.shape[1],))
    wanted = statistics and groups is not None
    example = x.new_empty(groups, dtype=torch.float32) if wanted else None
    plan = C_ext.NormActFwdPlan(
        _arg(x), *(_optional_arg(t) for t in vectors), destination,
        *(2 * (_statistics_arg(example) if wanted else None,)), stats, float(momentum),
        float(eps), ACTIVATION_CODES[activation], float(slope), float(dropout_p))
    offset_bytes = out_channel_offset * out.stride(1) * out.element_size()

    def address(t):
        return 0 if t is None else t.data_ptr()

    def launch(x, weight, bias, running_mean, running_var, out, seed, offset):
        mean = rstd = None
        if wanted:
            mean = torch.empty(groups, dtype=torch.float32)
            rstd = torch.empty(groups, dtype=torch.float32)
        _, seed, offset, _, _ = _rng(dropout_p, seed, offset, x.device) if dropout_p else (
            0, 0, 0, 0, 0)
        plan(x.data_ptr(), address(weight), address(bias), address(running_mean),
             address(running_var), out.data_ptr() + offset_bytes, address(mean), address(rstd),
             seed, offset, 0, 0, torch.get_num_threads(), 0, 0, 0)
        if wanted or not statistics:
            return (mean, rstd) if wanted else None
        return x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)

    return launch


def norm_act_bwd(grad_out_slice, x, weight, bias, mean, rstd, *, norm, activation, slope,
                 dropout_p, seed, offset, training=True):
    """Gradients of norm_act_fwd: (grad_x, grad_weight, grad_bias); the last two None without
    affine.

    ``mean``/``rstd`` are what norm_act_fwd returned. ``training=False`` marks batch norm whose
    forward used the running stats (its ``training or running_mean is None`` was False), so the
    statistics do not depend on x (keyword-only, with the training default).
    """
    C_ext = _require()
    _check_device(x, "norm_act")
    n, channels, height, width = x.shape
    stats = _BATCH_EVAL if norm == "batch" and not training else _stats_mode(norm, True, None)
    dropout_p, seed32, offset32, seed_ptr, offset_ptr = _rng(dropout_p, seed, offset, x.device)
    activation_code = ACTIVATION_CODES[activation]

    layout = _layout_of(x)
    if layout is None:
        layout, x = "channels_last", _conform(x, "channels_last")
    grad_out = _conform(grad_out_slice, layout)
    grad_x = _empty_in(layout, x)
    affine = weight is not None
    grad_weight = torch.empty(channels, dtype=torch.float32, device=x.device) if affine else None
    grad_bias = torch.empty(channels, dtype=torch.float32, device=x.device) if affine else None
    stream, workspace = _device_extras(
        x, lambda: C_ext.norm_act_bwd_workspace_floats(n, channels, height, width, stats))
    # Float32 contiguous copies where needed (the saved statistics were checked above to have
    # their shape), held in locals until the kernel has run: the arguments hold only addresses.
    weight32, bias32 = _fp32(weight), _fp32(bias)
    mean32, rstd32 = (None, None) if stats == _NONE else (_fp32(mean), _fp32(rstd))
    C_ext.norm_act_bwd(_arg(grad_out), _arg(x), _arg(grad_x), _optional_arg(weight32),
                       _optional_arg(bias32),
                       None if mean32 is None else _statistics_arg(mean32),
                       None if rstd32 is None else _statistics_arg(rstd32),
                       _optional_arg(grad_weight), _optional_arg(grad_bias), stats,
                       activation_code, float(slope), dropout_p, seed32, offset32, seed_ptr,
                       offset_ptr, torch.get_num_threads(), stream, _optional_arg(workspace))
    if affine:
        grad_weight, grad_bias = grad_weight.to(weight.dtype), grad_bias.to(bias.dtype)
    return grad_x, grad_weight, grad_bias


# -- losses ------------------------------------------------------------------------------------
def _check_loss_device(t):
    """The one check of its own: the loss kernels are CPU code (the arguments were checked by
    the op)."""
    if not t.is_cpu:
        raise ValueError(f"the C++ loss kernels take CPU tensors, got one on {t.device}")


def _dense_alike(first, *others):
    """The tensors with the exact strides of the first (the extension compares them raw): the
    first as it is when dense, else a contiguous copy; each other as it is when its strides are
    the first's, else copied into them. Two dense tensors of one layout can differ in a size-1
    dimension's stride (a 1-channel channels-last image and a contiguous one)."""
    dense = first.is_contiguous() or (first.dim() == 4 and
                                      first.is_contiguous(memory_format=torch.channels_last))
    if not dense:
        first = first.contiguous()
    return (first,) + tuple(
        t if t.stride() == first.stride() else
        torch.empty_strided(first.shape, first.stride(), dtype=t.dtype, device=t.device).copy_(t)
        for t in others)


def _like(t):
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)


def gan_loss_fwd(logits, *, mode, target_is_real):
    """(loss, grad_logits): the GANLoss mean against 1 (real) or 0 (fake) and d loss / d logits."""
    C_ext = _require()
    _check_loss_device(logits)
    (logits,) = _dense_alike(logits.detach())
    grad = _like(logits)
    loss = torch.empty((), dtype=torch.float32)
    C_ext.gan_loss_fwd(_arg(logits), _arg(grad), _arg(loss), GAN_MODE_CODES[mode],
                       bool(target_is_real), torch.get_num_threads())
    return loss, grad


def l1_loss_fwd(x, y):
    """(loss, grad_x): mean |x - y| and its gradient with respect to x (grad_y = -grad_x)."""
    C_ext = _require()
    _check_loss_device(x)
    x, y = _dense_alike(x.detach(), y.detach())
    grad = _like(x)
    loss = torch.empty((), dtype=torch.float32)
    C_ext.l1_loss_fwd(_arg(x), _arg(y), _arg(grad), _arg(loss), torch.get_num_threads())
    return loss, grad


def conv_transpose2d_fwd(x, weight, bias, *, stride, padding):
    """``F.conv_transpose2d(x, weight, bias, stride, padding)`` for float32 CPU tensors (no
    output padding, dilation or groups; no autograd), as one GEMM of the NHWC input rows with
    the weight seen as (in_channels, out_channels * k * k), then the C++ col2im gather (+ bias).
    Returns a channels-last tensor. Faster than the oneDNN deconvolution on small maps, where
    that one is dominated by reordering the weight on every call.

    Checks nothing itself: the op (fastp2p.ops.conv_transpose, ``_gemm_form_applies``) sends
    only float32 CPU tensors of a square-kernel module, and what a direct call gets wrong
    still fails loudly, in torch's GEMM (dtype, device, in_channels) or at the extension's
    CHECKs (cols, out, bias)."""
    C_ext = _require()
    batch, in_channels, height, width = x.shape
    channels, kernel = weight.shape[1], weight.shape[2]
    rows = x.detach().permute(0, 2, 3, 1).reshape(batch, -1, in_channels)  # a view if NHWC
    # The weight as a matrix in its own memory order (no copy of it on any call): contiguous,
    # (in, out, k, k) -> taps minor; channels-last, (in, k, k, out) -> taps major.
    weight = weight.detach()
    taps_minor = weight.is_contiguous()
    if not taps_minor:
        weight = weight.permute(0, 2, 3, 1).contiguous()  # a view unless oddly strided
    matrix = weight.view(in_channels, -1)
    bias_arg = _optional_arg(None if bias is None else bias.detach())
    out_height = (height - 1) * stride - 2 * padding + kernel
    out_width = (width - 1) * stride - 2 * padding + kernel
    out = torch.empty((batch, out_height, out_width, channels), dtype=torch.float32)
    # cols holds k*k values per output value: a few images at a time bound that buffer.
    cols_bytes_per_image = height * width * matrix.shape[1] * 4
    images = max(1, min(batch, _CONV_COLS_BYTES // max(1, cols_bytes_per_image)))
    for first in range(0, batch, images):
        count = min(images, batch - first)
        cols = torch.mm(rows[first:first + count].reshape(-1, in_channels), matrix)
        C_ext.col2im_transposed(_arg(cols.view(count, height, width, -1)), bias_arg,
                                _arg(out[first:first + count]), kernel, stride, padding,
                                taps_minor, torch.get_num_threads())
    return out.permute(0, 3, 1, 2)
