#!/usr/bin/env bash
# Every GPU check of this project in one command: the cuda tests, the update benchmark, end-to-end training runs.
#
#   bash scripts/gpu-checks.sh           # on a machine with an NVIDIA GPU: ~6-8 minutes on an H200 (estimated)
#   bash scripts/gpu-checks.sh wheels    # where PyPI is reachable: put into .whl/ the pure-Python packages that an
#                                        # offline GPU machine with its own CUDA torch lacks; carry .whl/ there
#
# 1. nvidia-smi, the Python, torch, CUDA and Triton versions, the GPU torch sees.
# 2. pytest -m cuda --slow tests/test_cuda.py (where every cuda test lives): compiled == eager on CUDA for IQL, BC and
#    discrete IQL; the CUDA-graph update == eager, recorded (no Inductor skip), its metrics intact; launch.py
#    hardware=cuda trains (summary.json says cuda), resumes bit for bit after a SIGKILL, compiles (also with
#    hardware.cuda_graphs=true), fine-tunes online. Every test runs even when one fails.
# 3. benchmarks/update_speed.py --device cuda: updates/s of eager, compiled and CUDA-graph updates against the eager
#    reference, batch 256, Hopper shapes, TF32 as hardware=cuda sets it; the bar of issue 16 (>= 5,000 updates/s and
#    >= 10x the reference) is printed, not enforced.
# 4. python launch.py hardware=cuda train.steps=20000 logger=none, eager and with compile + CUDA graphs: steps/s over
#    the second half of the run with evaluation, logging and checkpoints in the loop (from metrics.jsonl), and
#    summary.json's steps_per_s; launch.log's last evaluation.
#
# Python: an interpreter that already has a CUDA torch ($PYTHON, else python3) is used as it is, with the project's
# other run-time packages added under $WORK/site, from .whl/ when it holds wheels (no network needed), else from
# PyPI; without one, a venv gets `pip install -e ".[dev]"`, whose torch from PyPI is a CUDA build on Linux x86-64.
# Everything printed also goes to $OUT/gpu-checks.log when OUT is set, with benchmark.json, pytest.xml and
# e2e-*.json beside it. Exit status: 0 when every check passed, 1 when one failed (the others still ran), 2 when
# there is no GPU to check. Settings (environment): PYTHON, WHEELS (.whl), WORK (/tmp/iql-gpu-checks: venv, site,
# datasets, run dirs), PYTEST_WORKERS (4, where pytest-xdist is installed), and the time limits PYTEST_TIMEOUT,
# BENCH_TIMEOUT, E2E_TIMEOUT (270, 150 and 2 x 80 s: with set-up, the whole fits in 10 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-$REPO/.whl}
WORK=${WORK:-/tmp/iql-gpu-checks}
# the packages a CUDA-torch image typically lacks (pure Python; versions as CI installs them)
RUNTIME_WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 minari==0.5.4 gymnasium==1.4.0 farama-notifications==0.0.6)
SDIST_ONLY=(antlr4-python3-runtime==4.9.3)  # omegaconf's parser runtime: no wheel on PyPI, built here
RUNTIME_IMPORTS="import hydra, omegaconf, minari, gymnasium, h5py, PIL, numpy, tqdm, yaml, pytest"

if [ "${1:-}" = wheels ]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" "${RUNTIME_WHEELS[@]}" &&
        "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "${SDIST_ONLY[@]}" || exit 1
    ls -l "$WHEELS"
    echo "bring $WHEELS to the GPU machine's checkout (as .whl/), then run there: bash scripts/gpu-checks.sh"
    exit 0
fi

export PYTHONUNBUFFERED=1
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu-checks.log") 2>&1
fi
started=$SECONDS
failed=()
section() { printf '\n=== %s (at %d s)\n' "$1" $((SECONDS - started)); }
check() {  # check NAME TIMEOUT_S COMMAND...: run it under a time limit, note a failure, go on
    local name=$1 limit=$2
    shift 2
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "!!! $name: stopped after ${limit} s"
    [ $rc -ne 0 ] && failed+=("$name (exit $rc)")
    return $rc
}
has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

section "GPU"
echo "repo $REPO at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' + uncommitted changes'), $(date -u '+%F %T') UTC"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi

section "Python environment"
mkdir -p "$WORK"
if has_cuda_torch "$PY"; then
    echo "using $(command -v "$PY") as it is: its torch sees a GPU"
    if ! PYTHONPATH="$REPO" "$PY" -c "$RUNTIME_IMPORTS" 2>/dev/null; then
        SITE=$WORK/site
        if compgen -G "$WHEELS/*.whl" >/dev/null; then
            echo "adding the wheels of $WHEELS under $SITE (offline)"
            "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
        else
            echo "adding ${RUNTIME_WHEELS[*]} ${SDIST_ONLY[*]} under $SITE (from PyPI)"
            "$PY" -m pip install -q --no-deps --upgrade --target "$SITE" "${RUNTIME_WHEELS[@]}" "${SDIST_ONLY[@]}"
        fi
        export PYTHONPATH=$SITE
    fi
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}  # the project itself, uninstalled: the checks run from here
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    VENV=$WORK/venv
    echo "no CUDA torch in $PY: a venv in $VENV with pip install -e \".[dev]\" (torch from PyPI)"
    { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"; } && "$VENV/bin/python" -m pip install -q -e ".[dev]" ||
        { echo "!!! the install failed"; exit 1; }
    PY=$VENV/bin/python
else
    echo "NO GPU: no NVIDIA GPU is visible here (nvidia-smi lists none) and $PY has no CUDA torch; nothing to check."
    echo "Run this on a GPU machine. (The cuda tests skip themselves here: pytest tests/test_cuda.py.)"
    exit 2
fi
if ! "$PY" -c "$RUNTIME_IMPORTS"; then
    echo "!!! a package the checks need is missing (above): on an offline machine, run 'bash scripts/gpu-checks.sh wheels' where PyPI is reachable and bring .whl/"
    exit 1
fi
"$PY" - <<'EOF'
import platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
try:
    import triton
    print(f"triton {triton.__version__}")
except ImportError:
    print("triton: not installed (hardware.compile=true needs it on CUDA)")
if not torch.cuda.is_available():
    sys.exit("NO GPU: torch.cuda.is_available() is False")
props = torch.cuda.get_device_properties(0)
print(f"GPU 0: {props.name}, compute capability {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
      f"{props.total_memory / 2**30:.0f} GiB; {torch.cuda.device_count()} GPU(s) visible")
EOF
[ $? -eq 0 ] || exit 2
export MINARI_DATASETS_PATH=${MINARI_DATASETS_PATH:-$WORK/minari}  # the runs of step 4 build the default dataset here

section "pytest -m cuda --slow"
workers=()
"$PY" -c "import xdist" 2>/dev/null && workers=(-n "${PYTEST_WORKERS:-4}")  # the compiles run side by side
check pytest "${PYTEST_TIMEOUT:-270}" "$PY" -m pytest -m cuda --slow -q -rs "${workers[@]}" tests/test_cuda.py \
    ${OUT:+--junitxml="$OUT/pytest.xml"}

section "update benchmark (batch 256, Hopper shapes: obs 11, act 3, 2x256 MLPs)"
bench_log=$WORK/benchmark.txt
check benchmark "${BENCH_TIMEOUT:-150}" "$PY" benchmarks/update_speed.py --device cuda \
    --modes eager,compile,cudagraphs --steps 1000 --blocks 5 --warmup 50 --matmul-precision high \
    > >(tee "$bench_log") 2>&1
sleep 1  # tee's last lines
"$PY" - "$bench_log" "${OUT:-}" <<'EOF'
import json, sys
from pathlib import Path

lines = Path(sys.argv[1]).read_text().splitlines()
try:
    result = json.loads(lines[-1])
except (IndexError, ValueError):
    sys.exit("no benchmark result")
best, ratio = result["updates_per_s"], result["ratio"]
verdict = "meets" if best >= 5000 and ratio >= 10 else "does not meet"
print(f"best: {result['best_mode']} at {best:.0f} updates/s, {ratio:.1f}x the reference "
      f"({result['reference_updates_per_s']:.0f}/s): {verdict} issue 16's bar (>= 5,000 updates/s and >= 10x); "
      f"CUDA graphs Inductor skipped: {result['cudagraph_skips']}")
if sys.argv[2]:
    Path(sys.argv[2], "benchmark.json").write_text(lines[-1] + "\n")
EOF

e2e() {  # e2e NAME OVERRIDES...: python launch.py hardware=cuda train.steps=20000 logger=none, then its steps/s
    local name=$1 dir=$WORK/e2e-$1
    shift
    rm -rf "$dir"
    section "end to end, $name: python launch.py hardware=cuda train.steps=20000 logger=none $*"
    mkdir -p "$dir"
    check "e2e $name" "${E2E_TIMEOUT:-80}" "$PY" launch.py hardware=cuda train.steps=20000 logger=none "$@" \
        "hydra.run.dir=$dir" >"$dir.out" 2>&1
    tail -n 3 "$dir.out"
    [ -f "$dir/launch.log" ] && grep "step 20000/20000" "$dir/launch.log" | tail -n 1
    [ -f "$dir/summary.json" ] || { echo "!!! $name: no summary.json"; return; }
    "$PY" - "$dir" "$name" <<'EOF'
import json, sys
from pathlib import Path

run_dir, name = Path(sys.argv[1]), sys.argv[2]
s = json.loads((run_dir / "summary.json").read_text())
rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
rows = [row for row in rows if "time/wall_s" in row]
half = next(row for row in rows if row["step"] >= s["steps"] // 2)  # past compilation and warm-up
steady = (rows[-1]["step"] - half["step"]) / max(rows[-1]["time/wall_s"] - half["time/wall_s"], 1e-9)
score = s.get("normalized_score")
print(f"{name}: {steady:.0f} steps/s over steps {half['step']}-{rows[-1]['step']} with evaluation, logging and "
      f"checkpoints in the loop; summary.json steps_per_s {s['steps_per_s']:.0f} (updates and sampling only, "
      f"compilation included); {s['steps']} steps in {s['wall_time_s']:.0f} s; device {s['device']}, normalized "
      f"score " + (f"{score:.1f}" if score is not None else "none"))
EOF
    [ -n "${OUT:-}" ] && cp "$dir/summary.json" "$OUT/e2e-$name.json"
}
e2e eager
e2e cudagraphs hardware.compile=true hardware.cuda_graphs=true

section "done in $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "every GPU check passed"
