"""The fused augmentation kernel (uint8 A|B pairs -> cropped, flipped, [-1, 1] A and B) against
the CPU preprocessing of packed pairs (``crop_flip_uint8``, the dataset's own path): through the
Triton interpreter on tiny odd shapes, outputs poisoned with NaN, fp32 exact and bf16 equal to
the fp32 result rounded; the plain-PyTorch fallback the same way; the real kernel on a GPU."""
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from fastp2p.data.gpu_augment import augment_batch, augment_pairs_torch, draw_crop_flips
from fastp2p.data.transforms import Preprocess, crop_flip_uint8, draw_params
from helpers.triton_interpreter import KERNELS

needs_interpreter = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]


def _pairs(count, height, width, seed=0, strided=False):
    """Random uint8 (N, H, 2W, 3) pairs; ``strided``: a view with gaps (no contiguous layout)."""
    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.integers(0, 256, (count, height, 2 * width + 3, 5),
                                           dtype=np.uint8))
    if strided:
        return pixels[:, :, 1:1 + 2 * width, 1:4]
    return pixels[:, :, :2 * width, :3].contiguous()


def _expected(pairs, config, draws, swap, dtype):
    """Item by item through the CPU path of the packed dataset."""
    width = pairs.shape[2] // 2
    halves = []
    for side in ((1, 0) if swap else (0, 1)):
        items = [crop_flip_uint8(pair[:, side * width:(side + 1) * width].numpy(), config, p)
                 for pair, p in zip(pairs, draws)]
        halves.append(torch.stack(items).to(dtype))
    return halves


def _poisoned(shape, dtype, layout):
    out = torch.full(shape, float("nan"), dtype=dtype)
    return out.contiguous(memory_format=torch.channels_last) if layout == "nhwc" else out


# count, half height, half width, crop, flip enabled, swap, strided input, out layout
CASES = [
    (3, 7, 9, 5, True, False, False, "nhwc"),
    (2, 6, 6, 6, True, True, True, "nchw"),       # crop == stored size: offsets are 0
    (4, 11, 5, 3, False, False, True, "nhwc"),    # --no_flip
    (1, 5, 13, 4, True, True, False, "nchw"),
]
IDS = [f"N{c[0]}-H{c[1]}-W{c[2]}-crop{c[3]}-{'flip' if c[4] else 'noflip'}-"
       f"{'BtoA' if c[5] else 'AtoB'}-{'strided' if c[6] else 'dense'}-out{c[7]}" for c in CASES]


def _run_case(case, dtype, launch):
    count, height, width, crop, flip, swap, strided, layout = case
    # mode "crop": offsets drawn over the stored (non-square) halves as they are
    config = Preprocess(mode="crop", load_size=max(height, width), crop_size=crop, flip=flip)
    pairs = _pairs(count, height, width, seed=count + crop, strided=strided)
    rngs = [random.Random(i) for i in range(count)]
    draws = [draw_params(config, width, height, random.Random(i)) for i in range(count)]
    crop_x, crop_y, flips = draw_crop_flips(config, height, width, rngs)
    if flip:
        assert 0 < int(flips.sum()) < count or count < 3     # both branches get exercised
    shape = (count, 3, crop, crop)
    out_a, out_b = _poisoned(shape, dtype, layout), _poisoned(shape, dtype, layout)
    got_a, got_b = launch(pairs, crop_x, crop_y, flips, crop, swap, dtype, out_a, out_b)
    want_a, want_b = _expected(pairs, config, draws, swap, dtype)
    assert not torch.isnan(got_a.float()).any() and not torch.isnan(got_b.float()).any()
    assert torch.equal(got_a, want_a) and torch.equal(got_b, want_b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_augment_matches_cpu_preprocessing(case, dtype, path, request):
    if path == "kernel":
        for mark in needs_interpreter:
            request.applymarker(mark)
        if KERNELS is None:
            pytest.skip("needs the Triton interpreter")
        from fastp2p.kernels.augment import augment_pairs

        def launch(pairs, x, y, f, crop, swap, dtype, out_a, out_b):
            return augment_pairs(pairs, x, y, f, crop_size=crop, swap=swap, dtype=dtype,
                                 out_a=out_a, out_b=out_b)
    else:
        def launch(pairs, x, y, f, crop, swap, dtype, out_a, out_b):
            a, b = augment_pairs_torch(pairs, x, y, f, crop_size=crop, swap=swap, dtype=dtype)
            out_a.copy_(a)
            out_b.copy_(b)
            return out_a, out_b
    _run_case(case, dtype, launch)


@pytest.mark.parametrize("swap", [False, True], ids=["AtoB", "BtoA"])
def test_augment_batch_equals_packed_dataset_items(tmp_path, swap):
    from PIL import Image

    from fastp2p.data.pack import pack_phase
    from fastp2p.data.packed import PackedDataset
    rng = np.random.default_rng(3)
    (tmp_path / "root" / "train").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (9 + i, 22, 3), dtype=np.uint8)).save(
            tmp_path / "root" / "train" / f"{i}.png")
    pack_phase(tmp_path / "root", tmp_path / "out", "train", load_size=10, progress=False)
    config = Preprocess(load_size=10, crop_size=7)
    dataset = PackedDataset(tmp_path / "out" / "train", config, swap=swap)
    order = [2, 0, 3, 1]
    batch = augment_batch(dataset.read_batch(order), config,
                          [random.Random(f"7/0/{i}") for i in order], swap=swap)
    for slot, index in enumerate(order):
        item = dataset.load(index, random.Random(f"7/0/{index}"))
        assert torch.equal(batch["A"][slot], item["A"]) and torch.equal(batch["B"][slot], item["B"])


def test_bad_arguments_get_clear_errors():
    from fastp2p.ops.augment import augment_pairs
    pairs = _pairs(2, 6, 6)
    zeros = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError, match="uint8"):
        augment_pairs(pairs.float(), zeros, zeros, zeros, crop_size=4)
    with pytest.raises(ValueError, match=r"crop_x must lie in \[0, 2\]"):
        augment_pairs(pairs, torch.tensor([0, 3], dtype=torch.int32), zeros, zeros, crop_size=4)
    with pytest.raises(ValueError, match="int32"):
        augment_pairs(pairs, zeros.long(), zeros, zeros, crop_size=4)
    with pytest.raises(ValueError, match="crop_size"):
        augment_pairs(pairs, zeros, zeros, zeros, crop_size=7)
    with pytest.raises(ValueError, match="dtype"):
        augment_pairs(pairs, zeros, zeros, zeros, crop_size=4, dtype=torch.int8)
    with pytest.raises(ValueError, match="3-channel"):
        augment_batch(pairs, Preprocess(load_size=6, crop_size=4, a_channels=1), [random] * 2)
    with pytest.raises(ValueError, match="one generator per pair"):
        augment_batch(pairs, Preprocess(load_size=6, crop_size=4), [random])


@pytest.mark.skipif(sys.modules.get("triton") is None and KERNELS is None,
                    reason="needs triton")
def test_kernel_compiles_for_sm90(tmp_path):
    """The interpreter cannot see compiled-mode errors: build the kernel for an sm_90 target."""
    script = textwrap.dedent("""
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from fastp2p.kernels.augment import _augment_kernel
        for out in ("fp32", "bf16"):
            signature = {name: "i32" for name in _augment_kernel.arg_names}
            signature.update(Pairs_ptr="*u8", CropX_ptr="*i32", CropY_ptr="*i32",
                             Flip_ptr="*i32", A_ptr="*" + out, B_ptr="*" + out,
                             C="constexpr", BLOCK_W="constexpr", BLOCK_C="constexpr",
                             OUT_BF16="constexpr")
            source = ASTSource(fn=_augment_kernel, signature=signature,
                               constexprs=dict(C=3, BLOCK_W=128, BLOCK_C=4,
                                               OUT_BF16=out == "bf16"))
            triton.compile(source, target=GPUTarget("cuda", 90, 32))
        print("compiled")
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and the source
    # folder fastp2p/ (without kernels/ inside) would shadow the installed package.
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0 and "compiled" in result.stdout, result.stderr[-3000:]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_on_cuda_matches_cpu_preprocessing(dtype):
    config = Preprocess(load_size=286, crop_size=256)
    pairs = _pairs(8, 286, 286, seed=9)
    rngs = [random.Random(i) for i in range(8)]
    draws = [draw_params(config, 286, 286, random.Random(i)) for i in range(8)]
    batch = augment_batch(pairs.pin_memory(), config, rngs, dtype=dtype, device="cuda")
    torch.cuda.synchronize()
    want_a, want_b = _expected(pairs, config, draws, False, dtype)
    assert batch["A"].is_cuda and batch["A"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch["A"].cpu(), want_a) and torch.equal(batch["B"].cpu(), want_b)
