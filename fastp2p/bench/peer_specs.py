"""The training peers of DESIGN.md §6 by name: what each runs (precision, layout, execution,
fastp2p's options), without importing torch, so that ``fastp2p bench --help`` can list them.
``fastp2p.bench.peers`` runs them."""
import contextlib
import os
from dataclasses import dataclass

from fastp2p.kernels.environment import PDL_ENV_VAR


@dataclass(frozen=True)
class PeerSpec:
    name: str
    description: str
    precision: str = "bf16"          # "fp32" | "bf16" (bf16 autocast, no GradScaler)
    channels_last: bool = True
    cudnn_benchmark: bool = True
    fused_adam: bool = True
    execution: str = "eager"         # "eager" | "compile" | "cuda-graph" | "fastp2p"
    compile_mode: str | None = None
    cuda_only: bool = False
    on_cpu_by_default: bool = False  # part of the CPU peer set (--quick, --device cpu)
    master_weights: bool = False     # fastp2p: the engine's master_weights option (issue 17)
    fused_step_losses: bool = False  # fastp2p: the engine's fused_step_losses option (issue 17)
    side_streams: bool = False       # fastp2p: the engine's side_streams option (issue 17)
    optimizer_overlap: bool = False  # fastp2p: the engine's optimizer_overlap option (issue 17)
    split_conv_backward: bool = False  # fastp2p: the engine's split_conv_backward (issue 17)
    pdl: bool = False                # fastp2p: FASTP2P_PDL=1 around the run (issue 17)

    def options(self, device_type: str) -> dict:
        """The options as run on ``device_type``: the engine's keyword arguments for fastp2p
        (its CPU path is eager fp32), the step's for the PyTorch peers. cuDNN autotuning is
        set around every peer from ``cudnn_benchmark``."""
        if self.execution == "fastp2p":
            if device_type == "cuda":
                switched_on = {name: True for name in ("master_weights", "fused_step_losses",
                                                       "side_streams", "optimizer_overlap",
                                                       "split_conv_backward")
                               if getattr(self, name)}
                return {"precision": self.precision, "channels_last": self.channels_last,
                        "cuda_graph": True, **switched_on}
            return {"precision": "fp32", "channels_last": False, "cuda_graph": False}
        options = {"precision": self.precision, "channels_last": self.channels_last,
                   "fused_adam": self.fused_adam}
        if self.compile_mode:
            options["compile_mode"] = self.compile_mode
        return options


_TUNED = "bf16 autocast, channels-last, cudnn.benchmark, fused Adam"
PEERS = (
    # The reference implementation turns cudnn.benchmark on itself (BaseModel, for fixed-size
    # crops), so its users get autotuned convolutions too.
    PeerSpec("reference", "reference modules, eager fp32 NCHW, default Adam, cudnn.benchmark "
             "as the reference implementation sets it (what its users run)", precision="fp32",
             channels_last=False, fused_adam=False, on_cpu_by_default=True),
    PeerSpec("eager-tuned", f"reference modules, eager, {_TUNED}", on_cpu_by_default=True),
    PeerSpec("cuda-graph", "eager-tuned step captured whole as one CUDA graph (no fastp2p "
             "kernels): isolates launch overhead", execution="cuda-graph", cuda_only=True),
    PeerSpec("fastp2p", "fastp2p Pix2PixEngine: bf16, channels-last, whole-step CUDA graph "
             "(on a CPU: its eager fp32 path)", execution="fastp2p", on_cpu_by_default=True),
    PeerSpec("compile-default", "torch.compile(G), torch.compile(D) of eager-tuned, mode "
             "default", execution="compile", compile_mode="default"),
    PeerSpec("compile-reduce-overhead", "torch.compile of eager-tuned, mode reduce-overhead "
             "(CUDA graphs through cudagraph trees)", execution="compile",
             compile_mode="reduce-overhead"),
    PeerSpec("compile-max-autotune", "torch.compile of eager-tuned, mode "
             "max-autotune-no-cudagraphs", execution="compile",
             compile_mode="max-autotune-no-cudagraphs"),
    # Switched-off fastp2p options last: a time budget cuts them before the peers users pick.
    PeerSpec("fastp2p-master-weights", "fastp2p with master_weights=True: the optimizer keeps "
             "float32 masters and writes the bf16 weights (no per-step weight casts); off by "
             "default until measured faster", execution="fastp2p", cuda_only=True,
             master_weights=True),
    PeerSpec("fastp2p-step-losses", "fastp2p with fused_step_losses=True: each network step's "
             "losses, gradients and loss bookkeeping in one fused launch plus a finishing one; "
             "off by default until measured faster", execution="fastp2p", cuda_only=True,
             fused_step_losses=True),
    PeerSpec("fastp2p-side-streams", "fastp2p with side_streams=True: D's forward, loss and "
             "backward share on the real pair on a second CUDA stream inside the one graph, "
             "beside the fake pair's; off by default until measured faster",
             execution="fastp2p", cuda_only=True, side_streams=True),
    PeerSpec("fastp2p-optimizer-overlap", "fastp2p with master_weights=True and "
             "optimizer_overlap=True: each network's Adam in a few buckets of layers, each "
             "launched on a second CUDA stream as soon as the backward has finished its "
             "gradients, beside the rest of the backward; off by default until measured faster",
             execution="fastp2p", cuda_only=True, master_weights=True, optimizer_overlap=True),
    PeerSpec("fastp2p-split-conv-backward", "fastp2p with split_conv_backward=True: each "
             "convolution's weight gradient on a second CUDA stream beside its data gradient, "
             "inside the one graph; off by default until measured faster", execution="fastp2p",
             cuda_only=True, split_conv_backward=True),
    PeerSpec("fastp2p-pdl", "fastp2p with FASTP2P_PDL=1: the Triton kernels of the step use "
             "programmatic dependent launch on GPUs of compute capability >= 9 (a kernel's "
             "launch overlaps the previous one's end); off by default until measured faster",
             execution="fastp2p", cuda_only=True, pdl=True),
)
PEER_NAMES = tuple(peer.name for peer in PEERS)


def default_peers(device_type: str) -> tuple:
    """The peers a run times when --peers does not name them: every one on a GPU, the CPU set
    (``on_cpu_by_default``) on a CPU."""
    return tuple(peer for peer in PEERS if device_type == "cuda" or peer.on_cpu_by_default)


def default_peers_left_out(device_type: str) -> str | None:
    """A note naming the peers of the default set that ``default_peers`` leaves out on
    ``device_type``, and why, or None: a CPU run's table must not pass for the whole set."""
    left_out = [peer for peer in PEERS if peer not in default_peers(device_type)]
    groups = [([p.name for p in left_out if p.cuda_only], "they need a CUDA GPU"),
              ([p.name for p in left_out if not p.cuda_only],
               f"on the {device_type} only when --peers names them")]
    reasons = [f"{', '.join(names)} ({why})" for names, why in groups if names]
    if not reasons:
        return None
    return f"training: peers of the default set not run on the {device_type}: " + "; ".join(
        reasons)


def peer_environment(spec: PeerSpec, device_type: str) -> dict:
    """Environment variables set around the peer's whole run (build, warm-up with its capture,
    timing, profile): FASTP2P_PDL=1 for a PDL peer on CUDA, else none."""
    return {PDL_ENV_VAR: "1"} if spec.pdl and device_type == "cuda" else {}


@contextlib.contextmanager
def environment(variables: dict):
    """``variables`` set in os.environ inside, the previous values restored after."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def peer_by_name(name: str) -> PeerSpec:
    for peer in PEERS:
        if peer.name == name:
            return peer
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")
