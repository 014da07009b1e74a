#!/usr/bin/env bash
# The small pretraining recipe on one GPU: img/s alone and three runs at once, by intra-op threads (issue 13:
# "say what it does on one GPU"; the thread cap of echocare/engine/threads.py). From the repository root:
#
#   bash bench/gpu_small_recipe.sh SHARDS [OUTDIR]
#
# SHARDS: 128-px shards, e.g. runs/t128/data/shards from
#   python bench/transfer.py --out runs/t128 --img-size 128 --tasks "" --inits echocare --steps 10
# Each run: recipes/pretrain/small.yaml at 128 px (mask patch 16), batch 64, 3 loader workers, fp32. Prints the
# median of the per-window img/s of each run (the first logging window, start-up, left out).
# Environment: PY (python, default .venv/bin/python or python3).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS=${1:?usage: bash bench/gpu_small_recipe.sh SHARDS [OUTDIR]}
OUT=${2:-runs/gpu_small_recipe}
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
mkdir -p "$OUT"
pretrain() {  # NAME STEPS [env...]
  local name=$1 steps=$2; shift 2
  env "$@" "$PY" -m echocare pretrain --config recipes/pretrain/small.yaml --output-dir "$OUT/$name" \
    --set data.shards="$SHARDS" --set model.img_size=128 --set data.mask_patch_size=16 --set data.num_workers=3 \
    --set train.batch_size=64 --set train.max_steps="$steps" --set train.progress=false \
    --set train.tensorboard=false --set train.image_every=0 --set train.ckpt_every="$steps" \
    > "$OUT/$name.log" 2>&1
}
rm -rf "$OUT"/alone-* "$OUT"/three-*
pretrain alone-default 200                       # the library's choice (capped at 2 threads next to a GPU)
pretrain alone-omp2 200 OMP_NUM_THREADS=2
pretrain alone-omp16 200 OMP_NUM_THREADS=16
for i in 1 2 3; do pretrain "three-default-$i" 300 & done; wait
"$PY" - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| run | threads (log) | median img/s |\n|---|---|---:|")
for run in sorted(p for p in out.iterdir() if p.is_dir()):
    rates = [json.loads(x)["img_per_s"] for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()][1:]
    log = (out / f"{run.name}.log").read_text()
    threads = next((ln.split("intra-op threads: ")[1].split(" (")[0] for ln in log.splitlines()
                    if "intra-op threads: " in ln), "?")
    print(f"| {run.name} | {threads} | {statistics.median(rates):.0f} |")
PY
