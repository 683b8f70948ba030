#!/usr/bin/env bash
# After docs/kd/campaign.sh (rules: docs/kd/SELECTION.md). 1. RECIPE_RULE on union-validation accuracy picks the
# recipe and seed (no test figure read); 2. the distilled seeds are exported; 3. both recipes' six students are read
# on the test rows and the Polish set (external-eval, seed-summary --paired kd-nomarks) and on the 97 breast cine
# clips (cine-eval, every frame), for the first time for these runs.
#   nohup bash docs/kd/measure.sh > runs/kd_measure.log 2>&1 &
# Environment: SONOLENS (default "sonolens"), PYTHON (default "python3", with sonolens importable). Re-running redoes
# every step except exports and cine evaluations already written.
set -euo pipefail
SONOLENS=${SONOLENS:-sonolens}
PYTHON=${PYTHON:-python3}
OUT=docs/kd
SEEDS=(0 1 2)
mkdir -p "$OUT/cine"
# 1. the pick
$SONOLENS loho pick-recipe --recipe nomarks "${SEEDS[@]/#/runs/union_nomarks_s}" \
  --recipe kd "${SEEDS[@]/#/runs/union_kd_s}" --json "$OUT/pick.json"
# 2. ONNX of the distilled seeds (the no-teacher seeds were exported by docs/union/measure.sh)
for s in "${SEEDS[@]}"; do
  [[ -f "runs/union_kd_s$s/student.onnx" ]] || \
    $SONOLENS export --checkpoint "runs/union_kd_s$s/best.pt" --out "runs/union_kd_s$s/student.onnx"
done
# 3. images: BUSI / BUS-UCLM test rows and the Polish lesions, every seed of both recipes; paired differences
models=()
for r in nomarks kd; do for s in "${SEEDS[@]}"; do models+=(--model "${r}_s$s=runs/union_${r}_s$s/student.onnx"); done; done
$SONOLENS external-eval "${models[@]}" --json "$OUT/seeds_external.json" --md "$OUT/seeds_external.md"
$SONOLENS seed-summary "$OUT/seeds_external.json" --paired kd-nomarks --md "$OUT/seeds.md" --json "$OUT/seeds.json"
# 4. video: the cine clips, every seed of both recipes (patient AUC over every frame is the paired figure)
for r in nomarks kd; do for s in "${SEEDS[@]}"; do
  [[ -f "$OUT/cine/${r}_s$s.json" ]] || $SONOLENS cine-eval --model "runs/union_${r}_s$s/student.onnx" --n-boot 1000 \
    --json "$OUT/cine/${r}_s$s.json" --md "$OUT/cine/${r}_s$s.md"
done; done
$PYTHON docs/kd/paired_cine.py "$OUT"/cine/*.json --md "$OUT/cine_paired.md"
