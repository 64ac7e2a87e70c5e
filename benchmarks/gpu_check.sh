#!/usr/bin/env bash
# The one-call GPU check, for a CUDA machine with no package registry (torch, triton, pytest,
# pytest-benchmark and matplotlib already installed):
#   1. pip install --no-build-isolation --no-deps -e .
#   2. the GPU tests (pytest -m cuda), then the other CPU tests quickly (no interpreter or slow
#      tests), then pytest benchmarks/ with --benchmark-disable (each micro-benchmark test once);
#   3. the Triton / CUDA C++ norm-act timings per shape and the choice table they give
#      (benchmarks/cuda_choice_table.py);
#   4. the full benchmark (python -m benchmarks), under a time budget that uses what the tests
#      left of GPU_CHECK_SECONDS (default 480 s, so the call ends well inside 10 minutes);
#   5. results JSON + markdown table + PNG chart, the choice table, the logs and the junit XML
#      copied to $OUT when it is set (9 files, no sub-folders) and to benchmarks/results/.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
TOTAL="${GPU_CHECK_SECONDS:-480}"
START=$(date +%s)
WORK="$(mktemp -d)"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
STATUS=0

log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] gpu_check: $*"; }
left() { echo $(( TOTAL - ($(date +%s) - START) )); }

# Everything printed also goes to gpu_check.log.
exec > >(tee "$WORK/gpu_check.log") 2>&1

finish() {  # copy results, logs and junit XML out, then exit with the overall status
    mkdir -p benchmarks/results
    cp "$RESULTS"/*.json "$RESULTS"/*.md "$RESULTS"/*.png benchmarks/results/ 2>/dev/null
    log "done in $(( $(date +%s) - START ))s, status $STATUS"
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        cp "$RESULTS"/*.json "$RESULTS"/*.md "$RESULTS"/*.png "$OUT"/ 2>/dev/null
        cp "$WORK/tests.log" "$WORK"/junit-*.xml "$OUT"/ 2>/dev/null
        sleep 1  # let tee flush before the log is copied
        cp "$WORK/gpu_check.log" "$OUT"/
    fi
    exit $STATUS
}

log "install (pip install --no-build-isolation --no-deps -e .)"
if ! timeout 240 "$PY" -m pip install --no-build-isolation --no-deps -e . \
        > "$WORK/install.log" 2>&1; then
    log "install FAILED:"; tail -n 30 "$WORK/install.log"; STATUS=1
fi
"$PY" -m fastp2p info
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "no CUDA GPU visible to torch: this is the GPU check (use 'fastp2p bench --quick' on a CPU)"
    STATUS=1; finish
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
    || true

# The editable install maps fastp2p.kernels to kernels/, so importing from the checkout works.
run_pytest() {  # name, seconds, pytest args...
    local name="$1" seconds="$2"; shift 2
    log "pytest $name (limit ${seconds}s): $*"
    timeout --signal=INT --kill-after=10 "$seconds" "$PY" -m pytest -q -rfEs \
        -p no:cacheprovider --junitxml="$WORK/junit-$name.xml" "$@" >> "$WORK/tests.log" 2>&1
    local rc=$?
    tail -n 3 "$WORK/tests.log"
    case $rc in
        0|5) log "pytest $name: passed (exit $rc)";;
        124|137) log "pytest $name: TIME LIMIT (${seconds}s) reached"; STATUS=1;;
        *) log "pytest $name: FAILED (exit $rc; see tests.log)"; STATUS=1;;
    esac
}

run_pytest cuda 180 -m cuda tests
run_pytest cpu 45 -m "not cuda and not slow and not interpreter" tests
run_pytest benchmarks 30 --benchmark-disable benchmarks

# The per-shape Triton / CUDA C++ choice (both launchers timed on every norm-act shape): commit
# it as fastp2p/ops/cuda_norm_act_choice.json together with the results file.
log "Triton vs CUDA C++ norm-act kernels per shape (limit 150s)"
timeout --signal=INT --kill-after=10 150 "$PY" benchmarks/cuda_choice_table.py \
    --out "$RESULTS/cuda_norm_act_choice.json" || { log "no choice table (see above)"; STATUS=1; }

# The benchmark gets what is left, minus a margin for writing and copying the results. Jobs
# that would start after its budget are reported as skipped; the hard limit is the safety net
# (the results JSON is rewritten after every job, so even a killed run leaves its figures).
BUDGET=$(( $(left) - 45 ))
if (( BUDGET < 60 )); then BUDGET=60; fi
log "benchmark (time budget ${BUDGET}s, 110s per job)"
timeout --signal=INT --kill-after=10 $(( BUDGET + 30 )) "$PY" -m benchmarks \
    --out "$RESULTS" --time-budget "$BUDGET" --peer-time-limit 110
BENCH_RC=$?
if (( BENCH_RC != 0 )); then
    log "benchmark exited with $BENCH_RC"; STATUS=1
    for json in "$RESULTS"/*.json; do  # a partial run: make its table and chart anyway
        [ -e "$json" ] && "$PY" -m benchmarks --plot "$json" > /dev/null 2>&1
    done
fi

finish
