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
cp runs/union_lite2_teacher/summary.json "$OUT/teacher_summary.json"  # the teacher's best epoch and val figures
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
# 5. the picked file: if it is a distilled seed, it gets its gate by the cross-hospital rule and the default's full
#    report (gate on every set, three levels against the shipped default, speed); either way the joined-clip test of
#    the shown class (item 4: does it follow a benign -> malignant change within 2 s?) for the picked file
R=$($PYTHON -c 'import json; print(json.load(open("docs/kd/pick.json"))["picked"])')
if [[ "$R" == *union_kd_s* ]]; then
  $SONOLENS fit-ood --model "$R/student.onnx" --out "$R/student.onnx" --candidate auto
  $SONOLENS ood-eval --model "$R/student.onnx" --out "$OUT/ood_report" --n-boot 500
  $SONOLENS model-report --model kd="$R/student.onnx" --model nomarks=models/weights/busi_lite0_student.onnx \
    --decision 1.0 --n-boot 1000 --out "$OUT/model_report"
  $SONOLENS bench --sections models --student "$R/student.onnx" --out-dir "$OUT/bench"
  F="$R/student.onnx"
else
  F=models/weights/busi_lite0_student.onnx
fi
$SONOLENS cine-eval --model "$F" --decision 1.0 --joins 9 --limit 0 --json "$OUT/joins.json" --md "$OUT/joins.md"
