"""The tolerance table of DESIGN.md section 5, and the error measure it is stated in."""
import torch

FP32_SINGLE_OP = 1e-5       # float32 kernel vs float64 reference, one op
FP32_NETWORK = 1e-4         # float32 whole UNet / PatchGAN, forward and every gradient
TF32_MATMUL = 1e-3          # TF32 matmul inside a float32 path
BF16_NETWORK = 2e-2         # bf16 whole model vs float64 reference
BF16_VS_AUTOCAST = 1.5      # ... and no worse than this times PyTorch's own bf16 autocast error
TRAINING_200_STEPS = 1e-3   # final weights, fused vs reference, float32, same seed
GOLDEN_OUTPUT = 1e-5        # compatibility with the reference implementation's golden outputs
FP64_SAME_MATH = 1e-10      # float64 module vs float64 reference: rounding order only


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (Frobenius); NaN or Inf never passes.
    Compared on the CPU, so a GPU result can be checked against a CPU oracle."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    if not torch.isfinite(actual).all():
        return float("inf")
    denominator = expected.norm().item()
    difference = (actual - expected).norm().item()
    return difference / denominator if denominator > 0 else difference


def assert_close(actual, expected, bound: float, what: str = "") -> None:
    error = relative_error(actual, expected)
    assert error <= bound, f"{what}: relative error {error:.3e} > {bound:.1e}"



def _stored(expected: torch.Tensor, dtype, interpreted: bool) -> torch.Tensor:
    """``expected`` stored in ``dtype`` as the machine under test stores it: rounded to nearest,
    except bf16 in the Triton interpreter, which rounds toward zero (triton 3.9 on the CPU: every
    stored bf16 is at most the float32 in magnitude; a GPU rounds to nearest)."""
    if interpreted and dtype == torch.bfloat16:
        bits = expected.detach().float().cpu().view(torch.int32) & -(1 << 16)
        return bits.view(torch.float32).to(dtype)  # exact: the low 16 bits are zero
    return expected.to(dtype)


def assert_storage_close(actual, expected, what: str = "", interpreted: bool = False) -> None:
    """DESIGN §5 for one op whose inputs are already stored in 16 bits, checked against float64
    on those same inputs: a bf16 / fp16 result no worse than BF16_VS_AUTOCAST times the error of
    storing ``expected`` in its dtype (what PyTorch's op, computing in float32 and rounding once,
    has; ``interpreted``: as the Triton interpreter stores it); a float32 result (statistics,
    parameter gradients summed in float32) to FP32_SINGLE_OP."""
    if actual.dtype == torch.float32:
        assert_close(actual, expected, FP32_SINGLE_OP, what)
        return
    floor = relative_error(_stored(expected, actual.dtype, interpreted), expected)
    error = relative_error(actual, expected)
    assert error <= BF16_VS_AUTOCAST * floor, (
        f"{what}: relative error {error:.3e} > {BF16_VS_AUTOCAST} x {floor:.3e}, the error of "
        f"storing the exact result in {actual.dtype}")
