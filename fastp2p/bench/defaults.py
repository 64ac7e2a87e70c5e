"""What a run times by default, without torch: the batch sizes, steps and time limits, the
inference cases of a GPU and the torch.compile jobs. The job builders and the option checks
read these, and so does ``fastp2p bench --help`` (which imports no torch), so the defaults and
the count its examples give are the ones a run uses and builds."""
from fastp2p.bench.peer_specs import PEERS

SECTIONS = ("training", "inference", "micro", "end-to-end")  # in the order they run; --sections
TRAINING_BATCH_SIZES = (1, 16, 64)       # training and end to end; --batch-sizes
QUICK_BATCH_SIZES = (1, 2)               # the same under --quick
STEPS, QUICK_STEPS = 50, 3               # timed steps (50: the protocol's minimum); --steps
WARMUP, QUICK_WARMUP = 10, 1             # untimed steps first; --warmup
JOB_TIME_LIMIT_S, QUICK_JOB_TIME_LIMIT_S = 240.0, 120.0  # --peer-time-limit
GPU_INFERENCE_BATCH_SIZES = (1, 16, 64)
INFERENCE_TRAIN_MODES = (False, True)    # each inference case in eval mode, then in train mode
# torch.compile modes that also get an inference variant when their training peer runs
INFERENCE_COMPILE_MODES = ("default", "reduce-overhead")


def inference_compile_modes(peers) -> tuple:
    """The torch.compile modes of ``peers`` (PeerSpec) timed in the inference section too."""
    return tuple(peer.compile_mode for peer in peers
                 if peer.compile_mode in INFERENCE_COMPILE_MODES)


def gpu_compile_job_count(peers=PEERS, batch_sizes=TRAINING_BATCH_SIZES) -> int:
    """The torch.compile jobs of a GPU run of ``peers``: each compiled training peer at each
    batch size, and each inference compile mode in each GPU inference case."""
    training = sum(peer.execution == "compile" for peer in peers) * len(batch_sizes)
    inference_cases = len(GPU_INFERENCE_BATCH_SIZES) * len(INFERENCE_TRAIN_MODES)
    return training + len(inference_compile_modes(peers)) * inference_cases
