#!/usr/bin/env bash
# The GPU check, for a CUDA machine with no package registry (torch, triton, pytest,
# pytest-benchmark and matplotlib already installed). Its log first names the checkout's commit
# and the tracked files that differ from it; then come the install and the stages
# GPU_CHECK_STAGES names, in its order (spaces or commas; an unknown name stops the check
# before the install).
# Its defaults are the first call of a 15-minute GPU window (benchmarks/NOTES.md, "Stop 62"),
# run with timeout_s 480: measure first, "bench profile choice" within GPU_CHECK_SECONDS=460.
# The window's second call (timeout_s 250, the re-run slot) runs the GPU tests:
#   GPU_CHECK_SECONDS=240 GPU_CHECK_STAGES=tests GPU_TEST_SECONDS=150 \
#       GPU_OPTION_TEST_SECONDS=40 bash benchmarks/gpu_check.sh
# The install and each stage:
#   install: pip install --no-build-isolation --no-deps -e .  (builds fastp2p._C with its CUDA
#      kernels; limit 240 s), and the wheel(s) carried in .whl/ (nvidia-cudnn-frontend, for the
#      cuDNN-graph provider: benchmarks/README.md says how to carry it) into $CUDNN_FE_SITE
#      (default /tmp/site), put on PYTHONPATH for every later stage;
#   bench: the benchmark (python -m benchmarks $BENCH_ARGS), limit BENCH_SECONDS (330), less
#      15 s for its results as its --time-budget; BENCH_ARGS (which replace the default) default
#      to training and inference at batch 1 and 64 with every peer a user would pick instead
#      of fastp2p (the three torch.compile modes too), each job at most 150 s
#      (--peer-time-limit; BENCH_ARGS's own wins);
#   profile: GPU time per step by kernel family and the heaviest kernels, batch 1 and 64
#      (benchmarks/profile_step.py -> profile.txt; limit 120 s);
#   choice: the Triton / CUDA C++ norm-act timings per shape and the choice table they give
#      (benchmarks/cuda_choice_table.py; limit 150 s);
#   tests: the GPU tests (pytest -m cuda) of the default path (limit GPU_TEST_SECONDS, 180;
#      run 1's 137 GPU tests took 148 s), then those of the options that are off by default
#      (GPU_OPTION_TEST_SECONDS, 60), then pytest benchmarks/ with --benchmark-disable (each
#      micro-benchmark test once), then every real norm-act shape (test_gpu_real_shapes,
#      GPU_REAL_SHAPES_SECONDS, 180: ~170 s alone);
#   conv: the fused Triton convolution against cuDNN + norm-act and the cuDNN fusion graphs
#      ("not installed" without the .whl/ wheel) per layer, batch 1 and 64, batch and instance
#      norm (benchmarks/conv_layer_timing.py), its table in the log and the conv choice table
#      it gives (conv_choice.json, every row inside) — CONV_LAYERS=quick (the default: four
#      layers, limit CONV_SECONDS, 90 s) or all (every conv of U-Net-256 and the PatchGAN: give
#      it a call of its own, GPU_CHECK_STAGES=conv CONV_LAYERS=all CONV_SECONDS=420); the table
#      is rewritten after each layer, so a stage stopped at CONV_SECONDS leaves what it measured.
# GPU_CHECK_SECONDS bounds the whole check: the install's and each stage's limit is cut to what
# is left of it (minus a margin for the results), and a step with under 30 s left is skipped,
# named in the log and the check marked failed.
# Every file is written where it is read back from as soon as it exists: $OUT when it is set
# (at most 8 files, no sub-folders: gpu_check.log, tests.log, the results JSON, markdown and
# PNG, the two choice tables, profile.txt), else a temporary folder; the results and the
# tables are also copied to benchmarks/results/. A run killed from outside still leaves its
# logs and the figures so far.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
TOTAL="${GPU_CHECK_SECONDS:-460}"
KNOWN_STAGES="tests choice conv profile bench"
STAGES="${GPU_CHECK_STAGES:-bench profile choice}"
STAGES="${STAGES//,/ }"
START=$(date +%s)
RESULTS="${OUT:-$(mktemp -d)}"
mkdir -p "$RESULTS"
STATUS=0

log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] gpu_check: $*"; }
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
MARGIN=20       # seconds kept for writing the results after the last stage
MIN_STAGE=30    # a stage with less than this left of GPU_CHECK_SECONDS is skipped
fit_limit() {   # name, wanted seconds: LIMIT = the seconds it gets; false (skip it) if too few
    local room=$(( $(left) - MARGIN ))
    if (( room < MIN_STAGE )); then
        log "$1 SKIPPED: ${room}s left of GPU_CHECK_SECONDS=${TOTAL} (wanted ${2}s)"
        STATUS=1; return 1
    fi
    LIMIT=$(( $2 < room ? $2 : room ))
}

# Everything printed also goes to gpu_check.log.
exec > >(tee "$RESULTS/gpu_check.log") 2>&1

finish() {  # copy the results into the checkout, then exit with the overall status
    mkdir -p benchmarks/results
    cp "$RESULTS"/*.json "$RESULTS"/*.md "$RESULTS"/*.png benchmarks/results/ 2>/dev/null
    log "done in $(( $(date +%s) - START ))s, status $STATUS; files in $RESULTS"
    exit $STATUS
}

log "stages: $STAGES (limit ${TOTAL}s)"
for stage in $STAGES; do
    if [[ " $KNOWN_STAGES " != *" $stage "* ]]; then
        log "unknown stage '$stage' in GPU_CHECK_STAGES: expected some of '$KNOWN_STAGES'"
        STATUS=1; finish
    fi
done
# Every limit a positive whole number of seconds (bash reads "2m" as 0, and timeout 0 is no
# limit at all); the benchmark keeps 15 s of its stage for writing its results.
for setting in GPU_CHECK_SECONDS:1 GPU_TEST_SECONDS:1 GPU_OPTION_TEST_SECONDS:1 \
        GPU_REAL_SHAPES_SECONDS:1 CONV_SECONDS:1 BENCH_SECONDS:16; do
    name="${setting%%:*}" least="${setting##*:}"
    value="${!name:-}"
    # no leading zero (bash reads 010 as octal 8) and at most 9 digits (no 64-bit wrap)
    if [[ -n "$value" ]] && { ! [[ "$value" =~ ^[1-9][0-9]{0,8}$ ]] || (( value < least )); }
    then
        log "$name must be a whole number of seconds >= $least, got '$value'"
        STATUS=1; finish
    fi
done
case "${CONV_LAYERS:-quick}" in
    quick|all) ;;
    *) log "CONV_LAYERS must be quick or all, got '$CONV_LAYERS'"; STATUS=1; finish;;
esac
# The commit the check runs, so that its logs (which name none) can be committed beside the
# results JSON: the device copy's git metadata can differ from its files (run 1).
checkout_commit() {
    local top commit changed
    top=$(git rev-parse --show-toplevel 2>&1)  # git's own words if it refuses (ownership)
    if [[ "$top" != "$(pwd -P)" ]] || ! commit=$(git rev-parse --short=8 HEAD 2>/dev/null)
    then
        log "commit unknown: not the top of a git checkout with a commit (${top%%$'\n'*})"
        return
    fi
    changed=$(git status --porcelain --untracked-files=no)
    if [[ -z "$changed" ]]; then
        log "commit $commit, no uncommitted changes to tracked files"
    else
        log "commit $commit with uncommitted changes to tracked files:"
        head -n 20 <<< "$changed"
    fi
}
checkout_commit
# At most 240 s, cut like a stage's limit to what is left of GPU_CHECK_SECONDS.
install_checkout() {
    fit_limit install 240 || return
    log "install (limit ${LIMIT}s): pip install --no-build-isolation --no-deps -e ."
    # A system interpreter marked externally managed (PEP 668) still takes an editable install.
    PIP_BREAK_SYSTEM_PACKAGES=1 timeout "$LIMIT" "$PY" -m pip install --no-build-isolation \
        --no-deps -e . > "$RESULTS/install.log" 2>&1
    local rc=$?
    if (( rc != 0 )); then
        log "install FAILED (exit $rc; 124: time limit):"; tail -n 30 "$RESULTS/install.log"
        STATUS=1
    fi
    rm -f "$RESULTS/install.log"
}
install_checkout
# The machine has no package registry: nvidia-cudnn-frontend comes as a wheel in .whl/.
CUDNN_FE_SITE="${CUDNN_FE_SITE:-/tmp/site}"
if compgen -G ".whl/*.whl" > /dev/null; then
    log "install the carried wheel(s) $(cd .whl && echo *.whl) into $CUDNN_FE_SITE"
    if PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$CUDNN_FE_SITE" .whl/*.whl; then
        export PYTHONPATH="$CUDNN_FE_SITE${PYTHONPATH:+:$PYTHONPATH}"
        "$PY" -c "import torch; torch.backends.cudnn.version(); import cudnn; print(
            'nvidia-cudnn-frontend', cudnn.__version__, 'on cuDNN',
            cudnn.backend_version_string())" \
            || log "the installed frontend does not import (the provider will say why)"
    else
        log "wheel install FAILED: the cuDNN-graph provider will be recorded as not installed"
    fi
else
    log "no wheel in .whl/: the cuDNN-graph provider will be recorded as not installed" \
        "(benchmarks/README.md: carrying nvidia-cudnn-frontend)"
fi
"$PY" -m fastp2p info  # versions, and whether fastp2p._C has its CUDA kernels
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "no CUDA GPU visible to torch: this is the GPU check (use 'fastp2p bench --quick' on a CPU)"
    STATUS=1; finish
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
    || true

# The editable install maps fastp2p.kernels to kernels/, so importing from the checkout works.
run_pytest() {  # name, seconds, pytest args...
    local name="$1"; fit_limit "pytest $name" "$2" || return; shift 2
    log "pytest $name (limit ${LIMIT}s): $*"
    echo "===== pytest $name: $*" >> "$RESULTS/tests.log"
    local before; before=$(wc -l < "$RESULTS/tests.log")
    timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" -m pytest -q -rfEs --durations=15 \
        -p no:cacheprovider "$@" >> "$RESULTS/tests.log" 2>&1
    local rc=$?
    # This call's own failures and summary line, not the earlier calls' in the same log.
    tail -n "+$(( before + 1 ))" "$RESULTS/tests.log" | grep -E "^(FAILED|ERROR)" | tail -n 20
    tail -n 1 "$RESULTS/tests.log"
    case $rc in
        0|5) log "pytest $name: passed (exit $rc)";;
        124|137) log "pytest $name: TIME LIMIT (${LIMIT}s) reached"; STATUS=1;;
        *) log "pytest $name: FAILED (exit $rc; see tests.log)"; STATUS=1;;
    esac
}

# The GPU tests of what is off by default (options, the fused convolution without a table,
# the dormant CUDA C++ norm-act kernels, the cuDNN graphs) run after those of the default path,
# with a limit of their own, so that a slow first compile of an option cannot cut the checks of
# what every user runs. A test file not listed here counts as the default path.
OPTION_TESTS=(
    tests/adam/test_master_weights_adam_cuda.py
    tests/backends/test_pdl.py
    tests/conv_norm_act
    tests/losses/test_engine_fused_step_losses.py
    tests/norm_act/test_norm_act_cuda_choice.py
    tests/test_engine_optimizer_overlap_cuda.py
    tests/test_engine_side_streams_cuda.py
    tests/test_engine_split_conv_backward_cuda.py
)
# Every real norm-act shape at batch 1 and 64 in three dtypes took ~170 s alone on a fresh H200
# (window 2): in the default path's call it would take the whole allowance and cut the tests
# after it, so it runs last, with a limit of its own.
REAL_SHAPES_TEST=tests/norm_act/test_norm_act.py::test_gpu_real_shapes
stage_tests() {
    run_pytest cuda-default-path "${GPU_TEST_SECONDS:-180}" -m cuda tests \
        "--deselect=$REAL_SHAPES_TEST" "${OPTION_TESTS[@]/#/--ignore=}"
    run_pytest cuda-options "${GPU_OPTION_TEST_SECONDS:-60}" -m cuda "${OPTION_TESTS[@]}"
    run_pytest benchmarks 30 --benchmark-disable benchmarks
    run_pytest cuda-real-shapes "${GPU_REAL_SHAPES_SECONDS:-180}" -m cuda "$REAL_SHAPES_TEST"
}

# The per-shape Triton / CUDA C++ choice (both launchers timed on every norm-act shape): commit
# it as fastp2p/ops/backends/cuda_norm_act_choice.json together with the results file.
stage_choice() {
    fit_limit choice 150 || return
    log "Triton vs CUDA C++ norm-act kernels per shape (limit ${LIMIT}s)"
    timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" benchmarks/cuda_choice_table.py \
        --out "$RESULTS/cuda_norm_act_choice.json" \
        || { log "no choice table (see above)"; STATUS=1; }
}

# The per-layer fused-conv / cuDNN choice: commit it as fastp2p/ops/backends/conv_choice.json
# together with the results file (it lists only layers the fused convolution won).
stage_conv() {
    local layers="${CONV_LAYERS:-quick}" flag=--quick  # checked before the install
    if [[ "$layers" == all ]]; then flag=; fi
    fit_limit conv "${CONV_SECONDS:-90}" || return
    log "fused convolution vs cuDNN + norm-act vs cuDNN graphs per layer ($layers" \
        "layers, limit ${LIMIT}s)"
    # shellcheck disable=SC2086  # flag is one option or none
    if ! timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" \
            benchmarks/conv_layer_timing.py $flag --out "$RESULTS/conv_choice.json"
    then
        log "conv timing incomplete (see above): the table holds the layers measured so far"
        STATUS=1
    fi
    if [[ -f "$RESULTS/conv_choice.json" ]]; then
        log "conv choice table $RESULTS/conv_choice.json (also copied to benchmarks/results/):" \
            "to make it the default, copy it to fastp2p/ops/backends/conv_choice.json and commit"
    fi
}

stage_profile() {
    fit_limit profile 120 || return
    log "profile of the fastp2p step (limit ${LIMIT}s)"
    timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" benchmarks/profile_step.py \
        --out "$RESULTS/profile.txt" || { log "no profile (see above)"; STATUS=1; }
}

# The benchmark gets at most BENCH_SECONDS (330) of what is left, minus a margin for writing
# the results. Jobs that would start after its budget, and the one it cuts short, are reported as
# skipped (exit code 0 if no job failed); the hard limit (SIGINT, which stops the whole
# benchmark, an end-to-end job's training too) is the safety net (the results JSON is
# rewritten after every job, so even a killed run leaves its figures).
JOB_SECONDS=150  # each benchmark job's --peer-time-limit, unless BENCH_ARGS gives one
# The window's first call: every peer a user would pick instead of fastp2p (issue 18; the
# torch.compile ones never measured yet) at batch 1 and 64, training and inference; not the
# fastp2p options off by default, batch 16, the micro-benchmarks or end to end.
FIRST_CALL_PEERS="reference,eager-tuned,cuda-graph,fastp2p,compile-default"
FIRST_CALL_PEERS+=",compile-reduce-overhead,compile-max-autotune"
FIRST_CALL_BENCH="--sections training,inference --batch-sizes 1,64 --peers $FIRST_CALL_PEERS"
BENCH_ARGS="${BENCH_ARGS:-$FIRST_CALL_BENCH}"  # given, they replace the first call's
bench_job_limit() {  # the one the benchmark keeps: argparse keeps the last one given
    local limit="$JOB_SECONDS" previous="" word
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
    for word in $BENCH_ARGS; do
        if [[ "$previous" == --peer-time-limit ]]; then limit="$word"; fi
        if [[ "$word" == --peer-time-limit=* ]]; then limit="${word#*=}"; fi
        previous="$word"
    done
    echo "$limit"
}
stage_bench() {
    fit_limit bench "${BENCH_SECONDS:-330}" || return
    local budget=$(( LIMIT - 15 ))
    log "benchmark (time budget ${budget}s, $(bench_job_limit)s per job): $BENCH_ARGS"
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
    timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" -m benchmarks \
        --out "$RESULTS" --time-budget "$budget" --peer-time-limit "$JOB_SECONDS" $BENCH_ARGS
    local rc=$?
    if (( rc != 0 )); then
        log "benchmark exited with $rc"; STATUS=1
        for json in "$RESULTS"/*.json; do  # a partial run: make its table and chart anyway
            [[ "$json" == *choice* ]] || "$PY" -m benchmarks --plot "$json" > /dev/null 2>&1
        done
    fi
}

for stage in $STAGES; do
    "stage_$stage"
done
finish
