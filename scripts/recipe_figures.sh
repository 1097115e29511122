#!/usr/bin/env bash
# The README's recipe figures (issue 5): digits, resnet10t at 16 px, CPU, seed 0, one run after another.
# Usage: scripts/recipe_figures.sh [OUTDIR]   (then see OUTDIR/results.txt)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$REPO/runs-figures}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
mkdir -p "$OUT" && cd "$OUT"
export TRAINFORGE_CONFIGS="$REPO/engine/trainforge/configs" PYTHONPATH="$REPO/engine:$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline
COMMON="--model.backbone=resnet10t --data.image_size=16 --trainer.max_epochs=6 --seed_everything=0
  --trainer.enable_progress_bar=false --trainer.enable_model_summary=false --wandb.enabled=false"
run() { # experiment run-name [overrides...]
  local exp=$1 name=$2; shift 2
  local t0=$SECONDS
  "$PY" -m trainforge fit --experiment "$exp" --run.name="$name" $COMMON "$@" > "$name.log" 2>&1
  "$PY" - "$exp" "$name" $((SECONDS - t0)) >> results.txt <<'PY'
import json, sys
exp, name, secs = sys.argv[1:]
m = json.load(open(f"runs/{exp}/{name}/summary.json"))["metrics"]
print(f"{exp:14s} {name:16s} test/acc={m['test/acc']:.4f} test/f1(macro)={m['test/f1']:.4f} seconds={secs}")
PY
}
: > results.txt
run imbalanced imb-plain
run balanced imb-balanced
run class_weights imb-weights
run default plain
run swa swa
run ema ema
cat results.txt
