#!/usr/bin/env bash
# After docs/loho/union.sh: the seed rule picks the run, its ONNX files get their gates, and every figure of
# docs/union/README.md is measured. Test rows, the Polish set, the cine clips and the non-breast clips are read here
# for the first time for these runs, after the pick (docs/loho/SELECTION.md).
#   nohup bash docs/union/measure.sh > runs/union_measure.log 2>&1 &
# Environment: SONOLENS (default "sonolens"), PYTHON (default "python3", with sonolens importable). Re-running
# redoes every step.
set -euo pipefail
SONOLENS=${SONOLENS:-sonolens}
PYTHON=${PYTHON:-python3}
OUT=docs/union
RUNS=(runs/union_nomarks_s0 runs/union_nomarks_s1 runs/union_nomarks_s2)
mkdir -p "$OUT"
# 1. the seed (union-validation accuracy; no test figure)
$SONOLENS loho pick-seed "${RUNS[@]}" --json "$OUT/pick.json"
R=$($PYTHON -c 'import json; print(json.load(open("docs/union/pick.json"))["picked"])')
# 2. ONNX (fp32 + INT8 calibrated on the union train rows) for every seed
for run in "${RUNS[@]}"; do
  $SONOLENS export --checkpoint "$run/best.pt" --out "$run/student.onnx" --int8 "$run/student_int8.onnx" \
    --calib ../shared/datasets --calib-split training/split_csv/busi_uclm.csv
done
# 3. the gate of the picked file: the cross-hospital rule picks the score and sets the threshold; the INT8 file gets
#    the same score refitted on its own features
$SONOLENS fit-ood --model "$R/student.onnx" --out "$R/student.onnx" --candidate auto
C=$($PYTHON -c "from sonolens.models.onnx_export import read_spec; print(read_spec('$R/student.onnx').ood['candidate'])")
$SONOLENS fit-ood --model "$R/student_int8.onnx" --out "$R/student_int8.onnx" --candidate "$C" --cross-hospital 0.05
# 4. the gate on every set (X-rays, photos, noise, lung and eye clips, the Polish lesions), with the method tables
$SONOLENS ood-eval --model "$R/student.onnx" --out "$OUT/ood_report" --n-boot 500
# 5. three levels: the picked file (fp32, INT8) against the shipped default; images for all three seeds
$SONOLENS model-report --model picked="$R/student.onnx" --model picked_int8="$R/student_int8.onnx" \
  --model busi=models/weights/busi_student.onnx --decision 1.0 --n-boot 1000 --out "$OUT/model_report"
$SONOLENS external-eval --model s0=runs/union_nomarks_s0/student.onnx --model s1=runs/union_nomarks_s1/student.onnx \
  --model s2=runs/union_nomarks_s2/student.onnx --json "$OUT/seeds_external.json" --md "$OUT/seeds_external.md"
$SONOLENS seed-summary "$OUT/seeds_external.json" --md "$OUT/seeds.md" --json "$OUT/seeds.json"
# 6. speed: forward with CAM and gate, fp32 and INT8 (a quiet machine: figures under load are flagged)
$SONOLENS bench --sections models --student "$R/student.onnx" --student-int8 "$R/student_int8.onnx" \
  --out-dir "$OUT/bench"
