#!/usr/bin/env bash
# The recipe the leave-one-hospital-out rule picked ("nomarks", docs/loho/SELECTION.md), trained on both training
# hospitals (training/split_csv/busi_uclm.csv), seeds 0-2. Re-running resumes: a finished run (summary.json) is
# skipped, an interrupted one continues from its last.pt. Which seed is the candidate default is decided by
# `sonolens loho pick-seed runs/union_nomarks_s*` (highest union-validation accuracy; no test figure read).
#   nohup bash docs/loho/union.sh > runs/union.log 2>&1 &
# Environment: SEEDS (default "0 1 2"), SONOLENS (default "sonolens").
set -euo pipefail
SONOLENS=${SONOLENS:-sonolens}
for seed in ${SEEDS:-0 1 2}; do
  name="union_nomarks_s${seed}"
  run="runs/${name}"
  if [[ ! -f "${run}/summary.json" ]]; then
    resume=()
    [[ -f "${run}/last.pt" ]] && resume=("resume=${run}/last.pt")
    $SONOLENS train baseline --config training/configs/busi_uclm_lite0_nomarks.yaml "name=${name}" "seed=${seed}" \
      "${resume[@]}"
  fi
done
