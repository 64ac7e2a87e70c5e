"""When do two float32 pix2pix trainings from the same seed drift apart? (CPU, tiny networks)

DESIGN.md §5 asks 200 float32 steps of fastp2p against the reference to end with weights within
1e-3. GAN training is chaotic: rounding-level differences stay at ~1e-7 for a while and then grow
fast, often starting in one step where a parameter's gradient is near zero and Adam's normalised
step turns its rounding noise into a step of ~lr. Whether and when that happens depends on the
seed, for *any* two summation orders. This study tells the fused path's drift from that chaos:
per seed it trains, from the same weights on the same batches,

- ``reference``: the reference modules, NCHW, through the reference step (the baseline);
- ``reordered``: the same, on channels-last tensors (the same math, summed in another order);
- ``fastp2p``: fastp2p's modules through its engine (the CPU backend FASTP2P_BACKEND picks);

and reports, for ``reordered`` and ``fastp2p`` against ``reference``, the first step whose
weights are more than 1e-3 apart (relative Frobenius over all parameters of G, then of D, left out
the biases an InstanceNorm cancels) and the distance after the last step.

The networks are tests/test_engine_reference.py's: U-Net with 5 downsamplings and ngf 4, a
2-layer PatchGAN with ndf 4, 32x32 random pairs, batch 2, 8 batches in turn, no dropout.

Run: ``python -m benchmarks.study_training_divergence [--seeds 0-7] [--steps 200]
[--norms batch,instance] [--out FILE.json]``.
"""
import argparse
import json
import sys

import torch
from tqdm import tqdm

from benchmarks.bench_cpu_inference import _environment
from fastp2p.bench.networks import build_pair, make_batch
from fastp2p.bench.peers import TrainStep
from fastp2p.nn.network_state import biases_an_instance_norm_cancels
from fastp2p.option_types import positive_int
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.networks import NetworkConfig

BOUND = 1e-3
BATCHES, BATCH_SIZE = 8, 2


def _config(norm):
    return NetworkConfig(image_size=32, num_downs=5, ngf=4, ndf=4, n_layers=2, norm=norm,
                         use_dropout=False)


def _flat_weights(net, left_out):
    return torch.cat([p.detach().flatten().double() for name, p in net.named_parameters()
                      if name not in left_out])


def _distance(pair, baseline, left_out):
    """The larger of G's and D's relative weight distance."""
    distances = []
    for net, base, cancelled in zip(pair, baseline, left_out):
        weights, base_weights = _flat_weights(net, cancelled), _flat_weights(base, cancelled)
        distances.append(float((weights - base_weights).norm() / base_weights.norm()))
    return max(distances)


def _channels_last_step(step):
    """A TrainStep call on channels-last copies of the batch (the modules are converted once)."""
    def run(real_a, real_b):
        step(real_a.contiguous(memory_format=torch.channels_last),
             real_b.contiguous(memory_format=torch.channels_last))
    return run


def run_seed(norm, seed, steps):
    """{"reordered": ..., "fastp2p": ...}: first step beyond BOUND (None if never) and the final
    distance from the reference run."""
    config = _config(norm)
    reference = build_pair(config, fast=False, device="cpu", seed=seed)
    reordered = build_pair(config, fast=False, device="cpu", seed=seed)
    fast = build_pair(config, fast=True, device="cpu", seed=seed)
    for net in reordered:
        net.to(memory_format=torch.channels_last)
    left_out = [biases_an_instance_norm_cancels(net) for net in reference]
    steppers = {
        "reference": TrainStep(*reference, device="cpu", precision="fp32", fused_adam=False),
        "reordered": _channels_last_step(
            TrainStep(*reordered, device="cpu", precision="fp32", fused_adam=False)),
        "fastp2p": Pix2PixEngine(*fast).step,
    }
    networks = {"reordered": reordered, "fastp2p": fast}
    batches = [make_batch(config, BATCH_SIZE, "cpu", seed=1000 + k) for k in range(BATCHES)]
    first_beyond = {name: None for name in networks}
    for step in range(1, steps + 1):
        for run in steppers.values():
            run(*batches[(step - 1) % BATCHES])
        for name, pair in networks.items():
            if first_beyond[name] is None and _distance(pair, reference, left_out) > BOUND:
                first_beyond[name] = step
    return {name: {"first_step_beyond": first_beyond[name],
                   "final_distance": _distance(pair, reference, left_out)}
            for name, pair in networks.items()}


def _seed_range(text):
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Prints one row per norm and seed; --out also writes them with the machine's "
               "description. CPU only, 1 thread (deterministic sums).")
    parser.add_argument("--seeds", type=_seed_range, default=_seed_range("0-7"),
                        help="network seeds, as 'LOW-HIGH' or one number (default 0-7)")
    parser.add_argument("--steps", type=positive_int, default=200,
                        help="training steps per run (default 200, DESIGN.md §5's count)")
    parser.add_argument("--norms", default="batch,instance",
                        help="comma-separated norms to study (default batch,instance)")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    norms = args.norms.split(",")
    if any(norm not in ("batch", "instance") for norm in norms):
        parser.error(f"--norms: each must be 'batch' or 'instance', got {args.norms!r}")
    torch.set_num_threads(1)
    rows = []
    for norm in norms:
        for seed in tqdm(args.seeds, desc=f"{norm} norm, seeds", file=sys.stderr):
            rows.append({"norm": norm, "seed": seed, **run_seed(norm, seed, args.steps)})
            row = rows[-1]
            tqdm.write(f"{norm:8s} seed {seed}: " + "; ".join(
                f"{name} beyond {BOUND:g} from step {row[name]['first_step_beyond'] or 'never'}, "
                f"final {row[name]['final_distance']:.2e}" for name in ("reordered", "fastp2p")),
                file=sys.stdout)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"environment": _environment(), "steps": args.steps, "bound": BOUND,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
