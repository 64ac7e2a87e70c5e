"""``fastp2p bench`` (also ``python -m benchmarks`` from a checkout): the benchmark suite."""
import argparse
import os
import signal
import sys
from pathlib import Path

from fastp2p.bench.defaults import (JOB_TIME_LIMIT_S, QUICK_BATCH_SIZES, QUICK_JOB_TIME_LIMIT_S,
                                    QUICK_STEPS, QUICK_WARMUP, SECTIONS, STEPS,
                                    TRAINING_BATCH_SIZES, WARMUP, gpu_compile_job_count)
from fastp2p.command_errors import error_line, options_given, print_error, unread_options
from fastp2p.option_types import non_negative_int, positive_int

DESCRIPTION = """\
Benchmark pix2pix training and inference, every peer side by side in one process
(DESIGN.md §6): reference eager fp32; tuned eager (bf16 autocast, channels-last,
cudnn.benchmark, fused Adam); torch.compile of it (default, reduce-overhead,
max-autotune-no-cudagraphs; G and D compiled separately); the tuned step captured as one CUDA
graph; and fastp2p's training engine. Reports median images/s over the timed steps with
p20/p80, peak memory, model-FLOP utilization against a bf16 matmul rate measured in the same
run, and fastp2p's ratio to each peer; then U-Net inference (fastp2p vs reference) and the
micro-benchmarks of benchmarks/bench_*.py (GB/s and fraction of the measured copy bandwidth;
a source checkout's folder, which pip install . does not install: see --benchmarks-dir);
then end to end: `fastp2p train` itself on a packed synthetic set (loading, augmentation,
logging, samples, checkpoints), images/s against the step-only figure, with the time waited
for data and each of the others reported apart.
A job that fails (compile error, out of memory, missing module, a micro-benchmark's
sys.exit, pytest skip or bad row, time limit) is reported as failed with its error, and the
run goes on; at the end the failed jobs are listed and the exit code is 1 (0 when every job
ran or was skipped by --time-budget). What was asked for and will not run (a section with
nothing to run, a torch.compile variant --quick leaves out, an option for a section left
out) is said on stderr and in the table. Ctrl-C or SIGTERM stops the run; the JSON keeps the
jobs that finished, and the last line names it (exit code 130; 143 for SIGTERM); another one
while it stops is ignored. A reader of stdout that goes away (| head) ends it quietly, exit
code 141. The training and inference sections need only the package's own dependencies
(torch, numpy); the end-to-end section and the data micro-benchmark also need Pillow and
tqdm, and the chart matplotlib: the [bench] extra installs them (pip install
'fastp2p[bench]'). Without them, those jobs fail with the package to install, the rest runs,
and the results are written without the chart.

Writes <out>/<device>-<YYYYMMDD>-<commit>.json (-quick.json for --quick; outside git,
build-<fingerprint of fastp2p --version> in place of <commit>) with every figure,
a markdown table beside it (also printed last) and a PNG bar chart of the training section;
<out> is ./fastp2p-bench-results, or a new temporary folder when run inside the source
checkout (so a run never writes into the source tree unless --out says so). A name an
earlier run's files hold (the same day and commit, or build) gets -2, -3, ...:
no run replaces another's results."""

_COMPILE_JOBS = gpu_compile_job_count()  # what a default GPU run builds, counted, not typed
EPILOG = f"""\
examples:
  fastp2p bench                         full run on the GPU (its {_COMPILE_JOBS} torch.compile
                                        jobs, training and inference, dominate)
  fastp2p bench --time-budget 300       the same, skipping whatever would start after 300 s
  fastp2p bench --quick                 tiny CPU smoke run of the same sections (the eager
                                        inference variants: no torch.compile)
  fastp2p bench --peers reference,fastp2p --batch-sizes 16 --sections training
  fastp2p bench --sections micro --micro bench_norm_act,bench_losses   the kernel benchmarks alone
  fastp2p bench --plot RUN.json         remake RUN.md and RUN.png beside a saved run's figures
                                        (they are replaced: copy a committed result first)"""


def _positive_ints(text: str) -> tuple:
    try:
        values = tuple(int(item) for item in text.split(","))  # int() refuses "" (1,,2)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got "
                                         f"{text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got "
                                         f"{text!r}")
    return tuple(dict.fromkeys(values))  # each size once, in the order given


# A week: no job or run needs longer, and the alarm that enforces a limit (signal.setitimer)
# overflows past about 9.2e9 s, failing every job ("timestamp out of range") after a run began
LONGEST_SECONDS = 7 * 24 * 3600


def _seconds(text: str) -> float:
    """A time limit: a finite number of seconds > 0, at most LONGEST_SECONDS."""
    from fastp2p.option_types import positive_float

    value = positive_float(text)
    if value > LONGEST_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {LONGEST_SECONDS} seconds (a week), "
                                         f"got {text!r}")
    return value


def _sizes(sizes: tuple) -> str:
    return ",".join(map(str, sizes))


def _path(text: str) -> Path:
    """A file or folder option's value (option_types.given_path: not empty) as a Path."""
    from fastp2p.option_types import given_path

    return Path(given_path(text))


def _names(text: str) -> tuple:
    """Each name once, in the order given: a peer named twice ran twice."""
    return tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


def _sections(text: str) -> tuple:
    """--sections: known section names, at least one."""
    names = _names(text)
    if not names or any(name not in SECTIONS for name in names):
        raise argparse.ArgumentTypeError(f"takes a comma-separated subset of "
                                         f"{','.join(SECTIONS)}; got {text!r}")
    return names


def _peers(text: str) -> tuple:
    """--peers: known peer names, at least one (whether the device runs them is asked later)."""
    from fastp2p.bench.peer_specs import PEER_NAMES, peer_by_name

    names = _names(text)
    if not names:
        raise argparse.ArgumentTypeError(f"takes a comma-separated list of {','.join(PEER_NAMES)}"
                                         "; got nothing (leave it out for the default peers)")
    for name in names:
        try:
            peer_by_name(name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _modules(text: str) -> tuple:
    """--micro: module names, at least one ("--micro ," would have run every module)."""
    names = _names(text)
    if not names:
        raise argparse.ArgumentTypeError("takes a comma-separated list of bench_*.py module "
                                         "names; got nothing (leave it out to run every module)")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fastp2p.bench.peer_specs import PEER_NAMES

    parser.add_argument("--quick", action="store_true",
                        help=f"CPU smoke mode: tiny networks (64x64, ngf=ndf=8), batch "
                             f"{_sizes(QUICK_BATCH_SIZES)}, {QUICK_STEPS} steps, CPU peers "
                             "only, eager inference variants, micro-benchmarks with "
                             "collect(quick=True); results are labelled 'quick' and say "
                             "nothing about GPU speed")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where to run (default: cuda when a GPU is visible, else cpu; "
                             "--quick always runs on the cpu)")
    parser.add_argument("--sections", type=_sections,
                        default=("training", "inference", "micro", "end-to-end"),
                        help="comma-separated subset of training,inference,micro,end-to-end "
                             "(default: all)")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=None,
                        help=f"training and end-to-end batch sizes (default "
                             f"{_sizes(TRAINING_BATCH_SIZES)}; quick: "
                             f"{_sizes(QUICK_BATCH_SIZES)})")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"timed training steps per peer and batch size, after warm-up "
                             f"(default {STEPS}, the protocol's minimum; quick: {QUICK_STEPS})")
    parser.add_argument("--warmup", type=non_negative_int, default=None,
                        help=f"untimed steps first: compilation, graph capture, cuDNN "
                             f"autotuning (default {WARMUP}; quick: {QUICK_WARMUP})")
    parser.add_argument("--peers", type=_peers, default=None,
                        help=f"comma-separated training peers (default on a GPU: all of "
                             f"{','.join(PEER_NAMES)}; on a CPU: reference,eager-tuned,fastp2p)")
    parser.add_argument("--processes", type=_positive_ints, default=None,
                        help="end-to-end section: comma-separated process counts to run "
                             "`fastp2p train` at, spawned as torchrun spawns them (gloo on a "
                             "CPU, one GPU each on CUDA); per-rank and total images/s; "
                             "at most one process per usable core on a CPU "
                             "(its affinity mask and CPU quota), one per GPU on CUDA "
                             "(default 1)")
    parser.add_argument("--peer-time-limit", type=_seconds, default=None,
                        metavar="SECONDS",
                        help="wall-time limit of each job (one peer at one batch size, one "
                             "inference case, one micro module), compilation included; past it "
                             f"the job is reported as failed (default {JOB_TIME_LIMIT_S:g}; "
                             f"quick: {QUICK_JOB_TIME_LIMIT_S:g}; at most {LONGEST_SECONDS}, "
                             "a week)")
    parser.add_argument("--time-budget", type=_seconds, default=None, metavar="SECONDS",
                        help="wall-time budget of the whole run; jobs that would start after it, "
                             "and the one it cuts short, are reported as skipped (not failed). "
                             "Compiled peers run last (training before the reference's compiled "
                             "inference; largest batch first, then the smallest; max-autotune "
                             "after the other training peers), so they are what a budget cuts "
                             "(default: none; "
                             f"at most {LONGEST_SECONDS}, a week)")
    parser.add_argument("--out", type=_path, default=None, metavar="DIR",
                        help="folder for the JSON, markdown and PNG (default: "
                             "./fastp2p-bench-results; inside the source checkout a new "
                             "temporary folder; printed either way)")
    parser.add_argument("--benchmarks-dir", type=_path, default=None, metavar="DIR",
                        help="folder of bench_*.py micro-benchmark modules (default: "
                             "benchmarks/ of the source checkout fastp2p is imported from, "
                             "as after pip install -e .; a fastp2p installed with pip install . "
                             "has none, and without this option the micro section is skipped "
                             "with a note: pass CHECKOUT/benchmarks of a clone)")
    parser.add_argument("--micro", type=_modules, default=None, metavar="MODULES",
                        help="comma-separated micro-benchmark modules to run, by file name "
                             "without .py (e.g. bench_norm_act,bench_losses; default: every "
                             "bench_*.py of the benchmarks folder)")
    parser.add_argument("--plot", type=_path, default=None, metavar="RESULTS_JSON",
                        help="run nothing: remake the markdown table and PNG chart beside a "
                             "saved results JSON (no chart without training rows: an older "
                             "one is removed), and print the table; the other options are "
                             "refused with it")
    parser.add_argument("--list-peers", action="store_true",
                        help="print the training peers and what each runs, then exit (the "
                             "other options are refused with it)")


def register(commands) -> None:
    parser = commands.add_parser("bench", help="benchmark training and inference against peers",
                                 description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    # given_options: the options the command line typed (fastp2p.cli finds them), which
    # --list-peers and --plot refuse at any value
    parser.set_defaults(run=run, given_options=None)


def check_options(args) -> None:
    """ValueError for a combination of options that is wrong whatever the machine (a single
    value is refused while parsing, by its type=, with the usage line); imports no torch, so
    that ``run`` refuses it at once rather than after seconds of loading it."""
    from fastp2p.bench.peer_specs import peer_by_name

    if args.quick and args.device == "cuda":
        raise ValueError("--quick is the CPU smoke mode; drop --device cuda (or --quick)")
    peers = [peer_by_name(name) for name in args.peers or ()]
    if args.quick or args.device == "cpu":
        _refuse_cuda_only(peers, "cpu")


def _refuse_cuda_only(peers, device: str) -> None:
    cuda_only = [p.name for p in peers if p.cuda_only and device != "cuda"]
    if cuda_only:
        raise ValueError(f"peer(s) {', '.join(cuda_only)} need a CUDA GPU; this run is on "
                         f"the {device}")


def _steps_and_warmup(args) -> tuple:
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else STEPS)
    warmup = args.warmup if args.warmup is not None else (
        QUICK_WARMUP if args.quick else WARMUP)
    return steps, warmup


def settings_from_args(args):
    """Validate the options (``check_options``, then what depends on the machine: a GPU, the
    cores, the benchmarks folder, the micro-benchmark modules) and fill in the defaults of
    the chosen mode."""
    import torch

    from fastp2p.bench.environment import package_checkout
    from fastp2p.bench.micro import micro_jobs
    from fastp2p.bench.networks import FULL_CONFIG, QUICK_CONFIG
    from fastp2p.bench.peer_specs import default_peers, default_peers_left_out, peer_by_name
    from fastp2p.bench.suite import SuiteSettings

    check_options(args)
    if args.quick:
        device = "cpu"
    elif args.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch "
                         f"{torch.__version__} (use --device cpu or --quick)")
    processes = args.processes or (1,)
    if "end-to-end" in args.sections:
        _check_process_count(max(processes), device)
    steps, warmup = _steps_and_warmup(args)
    notes = unused_options(args)
    if args.peers is None:
        peers = default_peers(device)
        left_out = default_peers_left_out(device)
        if left_out and "training" in args.sections:
            notes += (left_out,)
    else:
        peers = tuple(peer_by_name(name) for name in args.peers)
        _refuse_cuda_only(peers, device)
    limit = args.peer_time_limit if args.peer_time_limit is not None else (
        QUICK_JOB_TIME_LIMIT_S if args.quick else JOB_TIME_LIMIT_S)
    checkout = package_checkout()  # the benchmarks/ beside the code that runs
    benchmarks_dir = args.benchmarks_dir or (checkout / "benchmarks" if checkout else None)
    runs_micro = "micro" in args.sections
    if runs_micro and benchmarks_dir is not None and not Path(benchmarks_dir).is_dir():
        raise ValueError(f"--benchmarks-dir {benchmarks_dir} is not a folder")
    # unknown names (or folder) fail here, before anything is timed; without the micro section
    # they are only noted as unused (unused_options), as any option for a section left out
    if args.micro and runs_micro:
        micro_jobs(benchmarks_dir, quick=args.quick, device=device, only=args.micro)
    return SuiteSettings(
        quick=args.quick, device=device, sections=tuple(args.sections),
        config=QUICK_CONFIG if args.quick else FULL_CONFIG,
        batch_sizes=args.batch_sizes or (QUICK_BATCH_SIZES if args.quick
                                         else TRAINING_BATCH_SIZES),
        steps=steps, warmup=warmup, peers=peers, job_time_limit=limit,
        time_budget=args.time_budget, benchmarks_dir=benchmarks_dir,
        inference_rep_ms=100.0 if args.quick else 500.0, micro_modules=args.micro,
        processes=processes, option_notes=notes)


def _check_process_count(processes: int, device: str) -> None:
    """ValueError unless each end-to-end process gets a GPU of its own (CUDA) or a core of its
    own (CPU: --processes 1000 started 1000 training processes on 2 cores)."""
    import torch

    from fastp2p.cpu_info import usable_cpus

    if device == "cuda" and processes > torch.cuda.device_count():
        raise ValueError(f"--processes {processes} needs as many GPUs; "
                         f"{torch.cuda.device_count()} visible")
    cores = usable_cpus()
    if device == "cpu" and processes > cores:
        raise ValueError(f"--processes {processes} on the cpu needs a core per process (each "
                         f"trains with its own compute threads); this process may run on "
                         f"{cores} core(s) (its affinity mask and CPU quota)")


# Options that only some sections read: given for a run without any of them, they are said to
# be unused (--micro with --sections training ran no module, without a word)
SECTION_OPTIONS = {"--batch-sizes": ("training", "end-to-end"),
                   "--steps": ("training", "end-to-end"),
                   "--warmup": ("training", "end-to-end"),
                   "--peers": ("training", "inference"),
                   "--processes": ("end-to-end",),
                   "--benchmarks-dir": ("micro",), "--micro": ("micro",)}


def unused_options(args) -> tuple:
    """A note for each option given that no section of the run reads."""
    return tuple(f"{option}: not used, as --sections leaves out {' and '.join(sections)}"
                 for option, sections in SECTION_OPTIONS.items()
                 if getattr(args, option[2:].replace("-", "_")) is not None
                 and not set(sections) & set(args.sections))


def default_out_dir(cwd=None) -> Path:
    """./fastp2p-bench-results, unless the working directory is inside the source checkout:
    then a new temporary folder (results land in benchmarks/results/ only with --out)."""
    import tempfile

    from fastp2p.bench.environment import find_checkout

    cwd = Path(cwd or os.getcwd()).resolve()
    checkout = find_checkout(cwd)
    if checkout is not None and cwd.is_relative_to(checkout.resolve()):
        return Path(tempfile.mkdtemp(prefix="fastp2p-bench-results-"))
    return cwd / "fastp2p-bench-results"


def _describe(error: OSError, out_dir) -> str:
    """``PATH: what the errno means``; a write's error names no file: then ``out_dir``."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"{error.filename if error.filename is not None else out_dir}: {reason}"


def check_writable(out_dir) -> None:
    """Create ``out_dir`` and write (then remove) a file in it, so that an unwritable --out
    fails before any job runs, not after the first one; raises OSError."""
    import tempfile

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out_dir) as probe:
        probe.write(b"fastp2p bench")
        probe.flush()


def failed_jobs(results: dict) -> list:
    """One line per job that failed (not those skipped by the time budget)."""
    lines = []
    for section in ("training", "inference", "micro", "end_to_end"):
        for row in results.get(section, []):
            if row.get("status") == "failed":
                who = ", ".join(f"{key} {row[key]}" for key in ("peer", "batch_size", "module",
                                                                  "device") if key in row)
                lines.append(f"{section} ({who}): {row.get('error', 'no error recorded')}")
    return lines


def list_peers() -> int:
    from fastp2p.bench.peer_specs import PEERS

    width = max(len(peer.name) for peer in PEERS)  # a fixed 26 was one short of the longest
    for peer in PEERS:
        where = "cuda only" if peer.cuda_only else (
            "cpu and cuda" if peer.on_cpu_by_default else "cuda (cpu on request)")
        print(f"{peer.name:{width}s}  {peer.description} [{where}]")
    return 0


def stopped(stop: KeyboardInterrupt, where: str) -> int:
    """Say that the command was stopped, and ``where`` its results are; the exit code."""
    from fastp2p.bench.stops import Stopped

    print(f"fastp2p bench: stopped ({str(stop) or 'KeyboardInterrupt'}); {where}",
          file=sys.stderr)
    return stop.exit_code if isinstance(stop, Stopped) else 128 + signal.SIGINT


def plot(json_path) -> int:
    """``--plot``: remake the table and chart beside a saved results JSON, print the table."""
    from fastp2p.bench import render
    from fastp2p.bench.results_files import ResultsFileError

    try:
        files = render.render_files(json_path)
    except KeyboardInterrupt as stop:  # the table may be remade and the chart not yet
        return stopped(stop, f"the table and chart beside {json_path} may be partly remade: "
                             "--plot it again")
    except ResultsFileError as error:  # not results, or a folder at the .md or .png
        print_error("bench", error)
        return 2
    except OSError as error:
        print_error("bench", _describe(error, json_path))
        return 2
    print(f"wrote {files['markdown']}" + (f" and {files['chart']}" if files["chart"] else ""))
    print(files["markdown"].read_text(encoding="utf-8"))
    return 0


def prepare_out_dir(out_dir, settings) -> str | None:
    """Make ``out_dir`` ready for the results before any job runs; the error line, or None.
    The name this run's results JSON is to take is checked here too: a FIFO or a folder there
    was refused only when the first job's figures were written (minutes in, on a GPU)."""
    from fastp2p.atomic_files import refuse_linked_folder
    from fastp2p.bench import environment
    from fastp2p.bench.results_files import (ResultsFileError, check_results_name, stem_for,
                                             what_is_at)
    from fastp2p.build_fingerprint import build_fingerprint

    try:
        refuse_linked_folder(out_dir)  # a link to nothing: mkdir would say "File exists"
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):  # mkdir: "File exists"
            return error_line("bench", f"--out {out_dir} is {what_is_at(out_dir)}, not a "
                              "folder: pass --out a folder (it is made if missing)")
        check_writable(out_dir)
        commit, _ = environment.git_commit(environment.package_checkout())
        check_results_name(out_dir, stem_for(environment.device_slug(settings.device),
                                             environment.file_date(), commit,
                                             build_fingerprint(), settings.quick))
    except ResultsFileError as error:
        return error_line("bench", str(error))
    except ValueError as error:
        return error_line("bench", f"--out {error}")
    except OSError as error:
        return error_line("bench", f"{_describe(error, out_dir)}; pass --out a folder this "
                                   "user can write")
    return None


class ProgressFiles:
    """Writes the results so far after each job, and the last ones with their table and
    chart, and remembers where: a stop or an error names the file that holds them, or says
    that nothing was saved."""

    def __init__(self, out_dir):
        self.out_dir, self.json, self.complete = out_dir, None, False

    def write(self, results: dict) -> None:
        from fastp2p.bench import results_files

        self.json = results_files.write_json(results, self.out_dir)
        self.complete = results.get("complete", False)

    def save(self, results: dict) -> dict:
        """The complete results, then their table and chart: {"json", "markdown", "chart"}."""
        from fastp2p.bench import render

        self.write(results)
        return {"json": self.json, **render.render_files(self.json)}

    def where(self) -> str:
        if self.json is None:
            return "nothing was saved"
        if self.complete:  # the table or the chart failed
            return f"the results are in {self.json} (--plot it for the table and chart)"
        return (f"the results of the jobs that finished are in {self.json} (--plot it for "
                "the table and chart)")


def run(args: argparse.Namespace) -> int:
    from fastp2p.bench.stops import stop_signals
    from fastp2p.stops_deferred import import_torch
    from fastp2p.train.early_refusals import refused_under_torchrun

    mode = "--list-peers" if args.list_peers else "--plot" if args.plot is not None else None
    ignored = _options_besides(args, mode) if mode else []
    if ignored:
        print_error("bench", f"{mode} runs no benchmark, so {unread_options(ignored)}")
        return 2
    if args.list_peers:
        return list_peers()
    # from here on a stop signal is reported, torch's import (seconds) included
    with stop_signals():
        if args.plot is not None:
            return plot(args.plot)
        code = refused_under_torchrun("bench", _refuse_torchrun)  # before the option checks
        if code is not None:
            return code
        try:
            check_options(args)  # a typo needs no torch: refused at once
            import_torch()  # first, whole: a stop raised inside it could abort the process
            settings = settings_from_args(args)
            out_dir = args.out or default_out_dir()
            problem = prepare_out_dir(out_dir, settings)
        except ValueError as error:
            print_error("bench", error)
            return 2
        except KeyboardInterrupt as stop:  # before any job: nothing measured
            return stopped(stop, "nothing was saved")
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        print(f"results go to {out_dir}" + ("" if args.out else " (--out to choose)"),
              flush=True)
        return run_and_save(settings, out_dir)


def _options_besides(args, mode: str) -> list:
    """The options typed, but ``mode`` (--list-peers or --plot), which runs no benchmark: with
    it they were ignored without a word, refused values (--sections bogus, --steps -5) too."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return [option for option in options_given(parser, args.given_options) if option != mode]


def _refuse_torchrun(processes: int) -> None:
    """ValueError for a torchrun job of several ``processes``: each would run the whole suite
    beside the others, timing them all against each other into competing results; the suite
    spawns the processes its end-to-end section trains in itself (--processes)."""
    if processes > 1:
        raise ValueError(f"fastp2p bench runs in one process, but torchrun started {processes} "
                         f"(WORLD_SIZE={processes}), each of which would run the whole "
                         "benchmark; run it without torchrun (--processes N times `fastp2p "
                         "train` at N processes, which it spawns itself)")


def run_and_save(settings, out_dir) -> int:
    """Run the suite into ``out_dir``; the exit code (1: a job failed; 128 + signal: stopped).
    Stop signals raise in here only inside ``stops.stop_signals()`` (``run`` sets it up)."""
    from fastp2p.atomic_files import NotAPlainFile
    from fastp2p.bench.results_files import ResultsFileError
    from fastp2p.bench.suite import run_suite

    progress = ProgressFiles(out_dir)
    try:
        results = run_suite(settings, on_progress=progress.write)
        files = progress.save(results)
    except OSError as error:  # e.g. the disk filled up during the run
        print_error("bench", f"{_describe(error, out_dir)}; {progress.where()}")
        return 1
    except (NotAPlainFile, ResultsFileError) as error:  # put at the results' names meanwhile
        print_error("bench", f"{error}; {progress.where()}")
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM, or a stop inside end-to-end training
        return stopped(stop, progress.where())
    for kind, path in files.items():
        if path is not None:
            print(f"wrote {kind}: {path}")
    print()
    print(files["markdown"].read_text(encoding="utf-8"))
    failures = failed_jobs(results)
    if failures:
        print(f"fastp2p bench: {len(failures)} job(s) failed:\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """``python -m benchmarks``: the same options as ``fastp2p bench``; the exit code, 2 for an
    option error too (only ``--help`` ends in argparse's ``SystemExit``). A caller that passes
    ``argv`` gets its own stop handlers back, as from ``fastp2p.cli.main``."""
    from fastp2p.bench.stops import caller_handlers_back
    from fastp2p.command_errors import CommandParser, UsageError
    from fastp2p.train.saved_options import given_options
    from fastp2p.train.stdout_reader import run_with_guarded_stdout

    parser = CommandParser(prog="python -m benchmarks", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    words = sys.argv[1:] if argv is None else list(argv)
    with caller_handlers_back(in_process=argv is not None):
        try:
            args = parser.parse_args(words)
        except UsageError as usage_error:   # --help's exit goes on, as argparse's
            return usage_error.code
        args.given_options = given_options(parser, words)   # as fastp2p.cli gives them
        return run_with_guarded_stdout(run, args)
