#!/usr/bin/env bash
# GPU benchmarks and tests in one go (issue 12). On a CUDA machine, from the repository root:
#
#   bash bench/gpu.sh              # writes bench/results/pretrain_step_gpu*.md, pretrain_profile_gpu.md, gpu_tests.txt
#   bash bench/gpu.sh --dry-run    # print the commands only (works without a GPU)
#
# Runs the pretraining-step benchmark on Swin-B at 256 px (fp32 and bf16; eager, eager + SDPA window attention,
# and torch.compile), a short profile, and the test files whose code runs on CUDA when it is present (the
# trainer and jobs put models on accelerate's device; tests/engine/test_engine_cuda.py needs CUDA). MFU =
# achieved FLOP/s / the datasheet dense peak of the detected GPU (override: PEAK_TFLOPS="fp32=X,bf16=Y").
# Environment: PY (python, default .venv/bin/python or python), BATCH (32), STEPS (20).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python
BATCH=${BATCH:-32}
STEPS=${STEPS:-20}
OUT=bench/results
run() { echo "+ $*"; if [[ $DRY == 0 ]]; then "$@"; fi; }

if [[ $DRY == 0 ]]; then
  NAME=$($PY -c "import torch, sys; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
  if [[ -z "$NAME" ]]; then echo "error: no CUDA device visible to torch" >&2; exit 2; fi
else
  NAME="(dry run)"
fi
# dense datasheet peaks, TFLOP/s (fp32 without TF32, bf16 tensor cores, no sparsity)
case "$NAME" in
  *H200*|*H100*SXM*|*"H100 80GB HBM3"*) PEAK_DEFAULT="fp32=67,bf16=989" ;;
  *H100*) PEAK_DEFAULT="fp32=51,bf16=756" ;;
  *A100*) PEAK_DEFAULT="fp32=19.5,bf16=312" ;;
  *L40S*) PEAK_DEFAULT="fp32=91.6,bf16=362" ;;
  *) PEAK_DEFAULT="" ;;
esac
PEAK=${PEAK_TFLOPS:-$PEAK_DEFAULT}
echo "GPU: $NAME; datasheet peaks: ${PEAK:-unknown (set PEAK_TFLOPS)}"
mkdir -p "$OUT"
COMMON=(--device cuda --model echocare_swin_base --img-size 256 --batch "$BATCH" --warmup 5 --steps "$STEPS"
        --gemm-size 8192 --precisions fp32,bf16)
[[ -n "$PEAK" ]] && COMMON+=(--peak-tflops "$PEAK")

run "$PY" bench/pretrain_step.py "${COMMON[@]}" --trainer --out "$OUT/pretrain_step_gpu.md"
run "$PY" bench/pretrain_step.py "${COMMON[@]}" --sdpa --skip-hf --out "$OUT/pretrain_step_gpu_sdpa.md"
run "$PY" bench/pretrain_step.py "${COMMON[@]}" --sdpa --compile --skip-hf --warmup 8 \
    --out "$OUT/pretrain_step_gpu_compiled.md"
run "$PY" bench/pretrain_step.py --device cuda --model echocare_swin_base --img-size 256 --batch "$BATCH" \
    --warmup 3 --profile 5 --precisions fp32,bf16 --out "$OUT/pretrain_profile_gpu.md"
if [[ $DRY == 0 ]]; then
  set +e
  "$PY" -m pytest -q -p no:cacheprovider tests/engine tests/models tests/jobs tests/tasks 2>&1 | tee "$OUT/gpu_tests.txt"
  status=${PIPESTATUS[0]}
  set -e
  echo "results in $OUT/pretrain_step_gpu*.md, $OUT/pretrain_profile_gpu.md, $OUT/gpu_tests.txt"
  exit "$status"
else
  echo "+ $PY -m pytest -q -p no:cacheprovider tests/engine tests/models tests/jobs tests/tasks | tee $OUT/gpu_tests.txt"
fi
