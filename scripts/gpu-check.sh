#!/usr/bin/env bash
# GPU check for cprop, on a machine with an NVIDIA GPU, in under 8 minutes:
#   1. a venv with torch==2.13.0 (a CUDA build), CuPy for the driver's CUDA major (12 or 13),
#      numba and the project with its test extras;
#   2. `cprop verify` (every backend, torch-cuda and cupy included);
#   3. the GPU tests (`pytest -m gpu`);
#   4. `cprop bench --device cuda` (CuPy fused kernel and torch CUDA paths vs a copy roofline).
# Each stage runs under `timeout` with what is left of the budget; a failing stage does not stop
# the next one; the exit status is the number of failed stages. Logs and the bench JSON go to
# $CPROP_GPU_OUT (default results/gpu-check/).
#
#   scripts/gpu-check.sh                       # fresh venv .venv-gpu
#   CPROP_GPU_VENV=.venv scripts/gpu-check.sh  # reuse a venv that already has CUDA torch/cupy
#   CPROP_GPU_SKIP_INSTALL=1 ...               # no network: only check what is installed
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${CPROP_GPU_BUDGET:-470}   # seconds; the whole script stays under 8 minutes
DEADLINE=$((SECONDS + BUDGET))
VENV=${CPROP_GPU_VENV:-.venv-gpu}
OUT=${CPROP_GPU_OUT:-results/gpu-check}
SIZES=${CPROP_GPU_SIZES:-1e5,1e6,1e7,1e8}
mkdir -p "$OUT"
failed=0

left() { echo $((DEADLINE - SECONDS)); }
stage() {  # stage NAME MAX_SECONDS COMMAND...
    local name=$1 cap=$2; shift 2
    local limit; limit=$(left)
    if [ "$limit" -gt "$cap" ]; then limit=$cap; fi
    if [ "$limit" -lt 10 ]; then
        echo "== $name: skipped, budget spent" | tee -a "$OUT/summary.txt"
        failed=$((failed + 1)); return
    fi
    echo "== $name (timeout ${limit}s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status in $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
    if [ "$status" -ne 0 ]; then failed=$((failed + 1)); fi
}

: > "$OUT/summary.txt"
if ! command -v nvidia-smi >/dev/null; then
    echo "gpu-check: nvidia-smi not found; this is not an NVIDIA GPU machine" | tee "$OUT/summary.txt"
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
# The driver's CUDA version bounds the runtime a wheel may use; nvcc (if any) is informative.
driver_cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\.\([0-9]*\).*/\1.\2/p' | head -n1)
nvcc_cuda=$(command -v nvcc >/dev/null && nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
major=${driver_cuda%%.*}
if [ "${major:-12}" -ge 13 ]; then cupy_package="cupy-cuda13x"; else cupy_package="cupy-cuda12x"; fi
echo "driver CUDA ${driver_cuda:-?}, nvcc ${nvcc_cuda:-none}: $cupy_package" | tee -a "$OUT/summary.txt"

install() {
    test -x "$VENV/bin/python" || python3 -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first and pinned (Linux wheels on PyPI are CUDA builds), then CuPy with its CUDA
    # toolkit wheels (NVRTC for the ElementwiseKernel), then the project.
    "$VENV/bin/python" -m pip install --quiet torch==2.13.0 || return 1
    "$VENV/bin/python" -m pip install --quiet "${cupy_package}[ctk]" || return 1
    "$VENV/bin/python" -m pip install --quiet -e '.[test,fast]' \
        || "$VENV/bin/python" -m pip install --quiet -e '.[test]' numba || return 1
    "$VENV/bin/python" - <<'PY'
import torch, cupy
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount())
assert torch.cuda.is_available(), "torch is not a CUDA build or sees no GPU"
PY
}
if [ -z "${CPROP_GPU_SKIP_INSTALL:-}" ]; then
    export -f install; export VENV cupy_package
    stage install 240 bash -c install
fi

stage verify 90 "$VENV/bin/cprop" verify
stage gpu-tests 90 "$VENV/bin/python" -m pytest -q -m gpu -p no:cacheprovider tests
stage bench 200 "$VENV/bin/cprop" bench --device cuda --sizes "$SIZES" --repeat 10 \
    --json "$OUT/bench-cuda.json"

echo "gpu-check: $failed failed stage(s) in ${SECONDS}s; logs in $OUT" | tee -a "$OUT/summary.txt"
exit "$failed"
